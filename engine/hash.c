/* The hashes of hash.h: SHA-256 from libcrypto, and FNV-1a for hash tables. */
#include <openssl/sha.h>

#include "cdcsync/hash.h"

void hash_sha256(const void *data, size_t len, uint8_t out[32]) {
        SHA256(data, len, out);
}

uint64_t hash_sha256_u64(const void *data, size_t len) {
        uint8_t d[32];
        uint64_t h = 0;
        hash_sha256(data, len, d);
        for (int i = 0; i < 8; i++)
                h = h << 8 | d[i];
        return h;
}

uint64_t hash_fnv1a(uint64_t h, const void *data, size_t len) {
        const unsigned char *b = data;
        for (size_t i = 0; i < len; i++)
                h = (h ^ b[i]) * UINT64_C(0x100000001b3);
        return h;
}
