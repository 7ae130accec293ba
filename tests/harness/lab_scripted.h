/*
 * lab_scripted: scripted fake cluster nodes, for exact command sequences a
 * real cluster cannot be made to produce on demand (a null endpoint, one
 * node that answers late while another answers at once, redirections to
 * many addresses). One forked process listens on several loopback ports;
 * each connection it accepts is served by a child of its own, so a slow
 * answer on one connection never holds up another.
 *
 * Commands are answered from a rules file the test writes with
 * lab_scripted_rules() (it may rewrite it at any time: it is read again
 * for every command). One rule per line, the first match wins; lines
 * starting with '#' and blank lines are skipped:
 *
 *   PORT | PATTERN | DELAY_MS | REPLY
 *
 * PORT: the port the connection came in on, or '*'. PATTERN: words matched
 * case-insensitively against the first arguments of the command ('*'
 * matches any one argument; the command may have more arguments than the
 * pattern has words). DELAY_MS: how long to wait before answering. REPLY:
 * RESP text in which \r, \n and \\ are escapes, or CLOSE (close the
 * connection without an answer), or NONE (answer nothing). A command that
 * no rule matches gets "-ERR no rule".
 *
 * Every connection, command and close is logged to srv->events_path, one
 * line per event, "MS PORT CONN EVENT", where MS is lab_now_ms()'s clock,
 * CONN a number per connection and EVENT one of "accept", "close" or
 * "cmd ARG ARG..." (arguments as received, cut at 64 bytes each).
 */
#ifndef REDTLS_TESTS_LAB_SCRIPTED_H
#define REDTLS_TESTS_LAB_SCRIPTED_H

#include <stddef.h>

#include "lab.h"

#define LAB_SCRIPTED_MAX_PORTS 64

/* Starts one process listening on nports fresh loopback ports (written to
 * ports; srv->port is ports[0]) with an empty rules file. Returns 0 or -1. */
int lab_scripted_start(lab_server *srv, unsigned nports, uint16_t *ports);

/* Replaces the rules with text. Returns 0 or -1. */
int lab_scripted_rules(const lab_server *srv, const char *text);

/* Events logged so far on port (0: any) whose EVENT starts with prefix. */
int lab_scripted_count(const lab_server *srv, uint16_t port, const char *prefix);

/* The MS of those events, in log order, up to cap of them; returns how
 * many there are in all. */
size_t lab_scripted_times(const lab_server *srv, uint16_t port, const char *prefix, long long *out, size_t cap);

/* Connections open on port (0: any): accepts minus closes, once the count
 * is want or timeout_ms has passed. */
int lab_scripted_open(const lab_server *srv, uint16_t port, int want, int timeout_ms);

#endif
