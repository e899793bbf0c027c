/* Version vectors: one counter per connector (node), a plain copyable value. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VCLOCK_MAX_NODES 16 /* a vector naming more connectors is refused with -E2BIG */
#define VCLOCK_NODE_MAX 64  /* bytes of a node id including its NUL (ids are <= 63 bytes) */
/* Upper bounds of the binary and text forms, for callers' buffers. */
#define VCLOCK_ENCODED_MAX (1 + VCLOCK_MAX_NODES * (1 + (VCLOCK_NODE_MAX - 1) + 10))
#define VCLOCK_TEXT_MAX (3 + VCLOCK_MAX_NODES * ((VCLOCK_NODE_MAX - 1) + 1 + 20 + 1))

typedef struct {
        char node[VCLOCK_NODE_MAX]; /* connector name, NUL-terminated, inline so the vector copies */
        uint64_t counter;           /* > 0: a zero counter is never stored (absent == 0) */
} VClockEntry;

/* Entries are sorted by node (strcmp) and unique, so equal vectors have equal bytes in use and
 * one canonical encoding. Zero-initialise for the empty vector. */
typedef struct {
        uint32_t n;
        VClockEntry e[VCLOCK_MAX_NODES];
} VClock;

typedef enum {
        VCLOCK_EQUAL = 0,
        VCLOCK_BEFORE,     /* a < b: a is causally older */
        VCLOCK_AFTER,      /* a > b */
        VCLOCK_CONCURRENT, /* neither contains the other */
} VClockOrder;

/* Whether name is a usable node id: 1..63 bytes of [A-Za-z0-9_.-] (so the text form needs no
 * quoting). */
bool vclock_node_valid(const char *name);
/* Counter of node, 0 when absent. */
uint64_t vclock_get(const VClock *v, const char *node);
/* Sets node's counter (0 removes it), keeping entries sorted. Returns 0, -EINVAL for a bad node
 * id, -E2BIG when a new node would exceed VCLOCK_MAX_NODES (v untouched on failure). */
int vclock_set(VClock *v, const char *node, uint64_t counter);
VClockOrder vclock_compare(const VClock *a, const VClock *b);
bool vclock_equal(const VClock *a, const VClock *b);
/* Pointwise max of a and b into *ret (which may alias a or b). -E2BIG when the union names more
 * than VCLOCK_MAX_NODES nodes; *ret untouched then. */
int vclock_merge(const VClock *a, const VClock *b, VClock *ret);

/* Binary form (for the state store): count, then per entry name length, name, LEB128 counter.
 * Writes at most size bytes; returns the length or -ENOBUFS. */
int vclock_encode(const VClock *v, uint8_t *buf, size_t size);
/* Reads one vector from the start of buf; returns the bytes consumed, or -EBADMSG on truncated,
 * non-canonical (unsorted, duplicate, zero counter, a counter in more bytes than it needs) or
 * otherwise invalid input: what decodes re-encodes to the same bytes. */
int vclock_decode(const uint8_t *buf, size_t len, VClock *ret);

/* Text form "{pg_a:42,pg_b:7}" ("{}" when empty), NUL-terminated; returns the length without the
 * NUL or -ENOBUFS. */
int vclock_format(const VClock *v, char *buf, size_t size);
/* Parses the text form exactly as vclock_format writes it: nodes in order, each once, counters
 * > 0 without leading zeros, no whitespace; so equal vectors have one spelling. Returns 0,
 * -EINVAL on anything else (bad syntax, a bad node id, unsorted or duplicate nodes, a zero or
 * zero-padded counter, a counter overflow), -E2BIG for too many nodes. */
int vclock_parse(const char *s, VClock *ret);
