/* Hashes, in one place: SHA-256 from libcrypto wherever a digest is wanted, and the one hash
 * written by hand, for the slots of in-memory hash tables. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* SHA-256 of data[0..len) (libcrypto): the state store's names of long row keys, version tags'
 * keys, and whether a conf section changed on reload. */
void hash_sha256(const void *data, size_t len, uint8_t out[32]);

/* The first 8 bytes of hash_sha256(data), as a number: a digest that fits a uint64_t field. */
uint64_t hash_sha256_u64(const void *data, size_t len);

#define HASH_FNV1A_INIT UINT64_C(0xcbf29ce484222325)

/* 64-bit FNV-1a of data[0..len), continuing from h (HASH_FNV1A_INIT to start). Only for picking a
 * slot of an in-memory hash table, on paths run once per row where a SHA-256 per probe would
 * cost several times more and no library we link offers a fast non-cryptographic hash; not a
 * digest: never for anything that must not collide. */
uint64_t hash_fnv1a(uint64_t h, const void *data, size_t len);
