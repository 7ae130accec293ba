/* Key slots inside the library: the common case of
 * redtls_cluster_key_slot (slot.c) inline, for the cluster clients' per
 * command path. */
#ifndef REDTLS_SLOT_H
#define REDTLS_SLOT_H

#include <stddef.h>
#include <stdint.h>

#include <redtls/redtls.h>

/* CRC16/XMODEM tables (slot.c): [0] is the one-byte table. */
extern const uint16_t redtls__crc16_tables[4][256];

/* redtls_cluster_key_slot, with a key that starts with a short hash tag
 * ("{user1000}...", tag of 1 to 8 bytes) hashed here without the call. */
static inline unsigned redtls__key_slot(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    if (key && len >= 3 && p[0] == '{') {
        unsigned crc = 0;
        size_t e = 1;
        for (; e < len && e <= 9 && p[e] != '}'; e++)
            crc = ((crc << 8) & 0xffffU) ^ redtls__crc16_tables[0][((crc >> 8) ^ p[e]) & 0xffU];
        if (e > 1 && e < len && p[e] == '}')
            return crc & (REDTLS_CLUSTER_SLOTS - 1);
    }
    return redtls_cluster_key_slot(key, len);
}

#endif
