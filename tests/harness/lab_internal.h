/* Shared between the harness's own files; tests use lab.h only. */
#ifndef REDTLS_TESTS_LAB_INTERNAL_H
#define REDTLS_TESTS_LAB_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lab.h"

void lab__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void lab__sleep_ms(int ms);
/* Child side of a fork: dies with the test program, closes every descriptor
 * but keep_fd, sends stdout/stderr to log_path. */
void lab__child_setup(const char *log_path, int keep_fd);
/* The same, keeping nkeep descriptors. */
void lab__child_setup_keep(const char *log_path, const int *keep, size_t nkeep);
/* fork() whose child pid is tracked for lab_stop_all(). */
pid_t lab__fork_tracked(void);
/* A listening loopback TCP socket on port (0: any); *bound gets the port. */
int lab__listen_tcp(uint16_t port, uint16_t *bound);
/* WORKDIR/KIND-PID-PORTSUFFIX */
void lab__log_path(lab_server *srv, const char *kind, const char *suffix, char *out, size_t outlen);
/* A forked loopback server: listens on a free port (srv->port), names its
 * log WORKDIR/KIND-...log (srv->log_path) and forks a tracked child.
 * Returns -1 on failure (logged), 1 in the parent (listener closed there),
 * 0 in the child, which owns *fd and must end with _exit(). */
int lab__fork_listener(lab_server *srv, const char *kind, int *fd);

#endif
