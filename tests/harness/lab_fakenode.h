/*
 * lab_fakenode: a fake Redis Cluster node (plain TCP, forked child on a
 * random loopback port, tracked and stopped like the other lab servers) for
 * the replies a real cluster cannot be made to give on demand: a MOVED
 * that loops, endless TRYAGAIN, CLUSTERDOWN that clears, ASK to itself.
 *
 * It answers CLUSTER SLOTS with one range 0-16383 served by itself
 * (127.0.0.1 and its port), PING with PONG, ASKING with OK, and every other
 * command according to the mode. Connections are served one at a time.
 */
#ifndef REDTLS_TESTS_LAB_FAKENODE_H
#define REDTLS_TESTS_LAB_FAKENODE_H

#include "lab.h"

typedef enum lab_fake_mode {
    LAB_FAKE_MOVED_LOOP,      /* -MOVED 1234 127.0.0.1:<own port>, always */
    LAB_FAKE_TRYAGAIN,        /* -TRYAGAIN ..., always */
    LAB_FAKE_CLUSTERDOWN_3,   /* -CLUSTERDOWN for the first 3 commands, then +OK */
    LAB_FAKE_ASK_SELF         /* -ASK 1234 127.0.0.1:<own port> unless ASKING came first, then +OK */
} lab_fake_mode;

int lab_fakenode_start(lab_server *srv, lab_fake_mode mode);

#endif
