/* redtls cluster helpers. Included by <redtls/redtls.h>; the rules stated
 * at the top of that header hold here too. */
#ifndef REDTLS_CLUSTER_H
#define REDTLS_CLUSTER_H

#include <stddef.h>

#include <redtls/redtls.h> /* REDTLS_EXTERN; harmless when included from it */

#ifdef __cplusplus
extern "C" {
#endif

/* Number of hash slots in a Redis Cluster. */
#define REDTLS_CLUSTER_SLOTS 16384

/* The hash slot of a key, as Redis Cluster computes it (CLUSTER KEYSLOT):
 * CRC16/XMODEM of the key, or of its hash tag, modulo 16384. The hash tag
 * is the part between the first '{' and the first '}' after it, when that
 * part is not empty ("{user1}.name" and "{user1}.mail" share a slot;
 * "{}x", "x{" and "}{x" hash whole). Binary safe; key may be NULL when len
 * is 0. */
REDTLS_EXTERN unsigned redtls_cluster_key_slot(const char *key, size_t len);

#ifdef __cplusplus
}
#endif

#endif
