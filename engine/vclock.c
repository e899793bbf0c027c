/* Version vectors: sorted (node, counter) arrays, their causal order, merge and both wire forms. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cdcsync/vclock.h"

bool vclock_node_valid(const char *name) {
        size_t n = 0;
        for (const char *p = name; *p; p++, n++) {
                char c = *p;
                if (n >= VCLOCK_NODE_MAX - 1)
                        return false;
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                      c == '.' || c == '-'))
                        return false;
        }
        return n > 0;
}

/* Index of node, or -(insertion point) - 1 when absent. */
static int find(const VClock *v, const char *node) {
        int lo = 0, hi = (int)v->n;
        while (lo < hi) {
                int mid = (lo + hi) / 2;
                int c = strcmp(v->e[mid].node, node);
                if (c == 0)
                        return mid;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return -lo - 1;
}

uint64_t vclock_get(const VClock *v, const char *node) {
        int i = find(v, node);
        return i >= 0 ? v->e[i].counter : 0;
}

int vclock_set(VClock *v, const char *node, uint64_t counter) {
        if (!vclock_node_valid(node))
                return -EINVAL;
        int i = find(v, node);
        if (i >= 0) {
                if (counter > 0) {
                        v->e[i].counter = counter;
                } else {
                        memmove(&v->e[i], &v->e[i + 1], (v->n - (uint32_t)i - 1) * sizeof(VClockEntry));
                        v->n--;
                        memset(&v->e[v->n], 0, sizeof(VClockEntry));
                }
                return 0;
        }
        if (counter == 0)
                return 0;
        if (v->n >= VCLOCK_MAX_NODES)
                return -E2BIG;
        i = -i - 1;
        memmove(&v->e[i + 1], &v->e[i], (v->n - (uint32_t)i) * sizeof(VClockEntry));
        memset(&v->e[i], 0, sizeof(VClockEntry));
        /* the length was checked by vclock_node_valid */
        memcpy(v->e[i].node, node, strlen(node) + 1);
        v->e[i].counter = counter;
        v->n++;
        return 0;
}

VClockOrder vclock_compare(const VClock *a, const VClock *b) {
        bool less = false, more = false; /* some counter of a is below / above b's */
        uint32_t i = 0, j = 0;
        while (i < a->n || j < b->n) {
                int c = i >= a->n ? 1 : j >= b->n ? -1 : strcmp(a->e[i].node, b->e[j].node);
                if (c < 0) { /* only in a */
                        more = true;
                        i++;
                } else if (c > 0) {
                        less = true;
                        j++;
                } else {
                        if (a->e[i].counter < b->e[j].counter)
                                less = true;
                        else if (a->e[i].counter > b->e[j].counter)
                                more = true;
                        i++, j++;
                }
        }
        if (less && more)
                return VCLOCK_CONCURRENT;
        return less ? VCLOCK_BEFORE : more ? VCLOCK_AFTER : VCLOCK_EQUAL;
}

bool vclock_equal(const VClock *a, const VClock *b) {
        return vclock_compare(a, b) == VCLOCK_EQUAL;
}

int vclock_merge(const VClock *a, const VClock *b, VClock *ret) {
        VClock m = {0};
        uint32_t i = 0, j = 0;
        while (i < a->n || j < b->n) {
                int c = i >= a->n ? 1 : j >= b->n ? -1 : strcmp(a->e[i].node, b->e[j].node);
                if (m.n >= VCLOCK_MAX_NODES)
                        return -E2BIG;
                if (c < 0) {
                        m.e[m.n++] = a->e[i++];
                } else if (c > 0) {
                        m.e[m.n++] = b->e[j++];
                } else {
                        m.e[m.n] = a->e[i];
                        if (b->e[j].counter > m.e[m.n].counter)
                                m.e[m.n].counter = b->e[j].counter;
                        m.n++, i++, j++;
                }
        }
        *ret = m;
        return 0;
}

int vclock_encode(const VClock *v, uint8_t *buf, size_t size) {
        size_t o = 0;
        if (size < 1)
                return -ENOBUFS;
        buf[o++] = (uint8_t)v->n;
        for (uint32_t i = 0; i < v->n; i++) {
                size_t len = strlen(v->e[i].node);
                if (size - o < 1 + len)
                        return -ENOBUFS;
                buf[o++] = (uint8_t)len;
                memcpy(buf + o, v->e[i].node, len);
                o += len;
                uint64_t c = v->e[i].counter;
                do {
                        if (o >= size)
                                return -ENOBUFS;
                        buf[o++] = (uint8_t)((c & 0x7f) | (c > 0x7f ? 0x80 : 0));
                        c >>= 7;
                } while (c);
        }
        return (int)o;
}

int vclock_decode(const uint8_t *buf, size_t len, VClock *ret) {
        VClock v = {0};
        size_t o = 0;
        if (len < 1 || buf[0] > VCLOCK_MAX_NODES)
                return -EBADMSG;
        uint32_t n = buf[o++];
        for (uint32_t i = 0; i < n; i++) {
                if (o >= len)
                        return -EBADMSG;
                size_t nl = buf[o++];
                if (nl == 0 || nl >= VCLOCK_NODE_MAX || len - o < nl)
                        return -EBADMSG;
                memcpy(v.e[i].node, buf + o, nl);
                v.e[i].node[nl] = '\0';
                o += nl;
                /* a NUL inside the name would cut it: another spelling of a shorter name */
                if (strlen(v.e[i].node) != nl || !vclock_node_valid(v.e[i].node))
                        return -EBADMSG;
                if (i > 0 && strcmp(v.e[i - 1].node, v.e[i].node) >= 0)
                        return -EBADMSG; /* not canonical: unsorted or duplicate */
                uint64_t c = 0;
                for (int shift = 0;; shift += 7) {
                        if (o >= len || shift > 63)
                                return -EBADMSG;
                        uint8_t b = buf[o++];
                        if (shift == 63 && (b & 0x7e))
                                return -EBADMSG; /* would overflow 64 bits */
                        c |= (uint64_t)(b & 0x7f) << shift;
                        if (!(b & 0x80)) {
                                /* a last byte of 0 after others is a longer spelling of the same
                                 * number, which vclock_encode never writes */
                                if (b == 0 && shift > 0)
                                        return -EBADMSG;
                                break;
                        }
                }
                if (c == 0)
                        return -EBADMSG;
                v.e[i].counter = c;
                v.n++;
        }
        *ret = v;
        return (int)o;
}

int vclock_format(const VClock *v, char *buf, size_t size) {
        size_t o = 0;
        int r;
        if (size < 1)
                return -ENOBUFS;
        r = snprintf(buf, size, "{");
        o = (size_t)r;
        for (uint32_t i = 0; i < v->n; i++) {
                if (o >= size)
                        return -ENOBUFS;
                r = snprintf(buf + o, size - o, "%s%s:%llu", i ? "," : "", v->e[i].node,
                             (unsigned long long)v->e[i].counter);
                if (r < 0 || (size_t)r >= size - o)
                        return -ENOBUFS;
                o += (size_t)r;
        }
        if (o + 1 >= size)
                return -ENOBUFS;
        buf[o++] = '}';
        buf[o] = '\0';
        return (int)o;
}

/* The text form is read back only as vclock_format writes it (canonical: nodes sorted and unique,
 * counters > 0 in decimal without leading zeros, no spaces), so two equal vectors never have two
 * spellings. Nothing in cdcsync stores or sends the text form for a reader: the state store,
 * cdcsync.versions and the Kafka envelope's cdcsync_vclock (a JSON object) all use other forms. */
int vclock_parse(const char *s, VClock *ret) {
        VClock v = {0};
        const char *p = s;
        if (*p++ != '{')
                return -EINVAL;
        if (*p == '}')
                goto done;
        for (;;) {
                VClockEntry e = {0};
                size_t nl = 0;
                while (*p && *p != ':') {
                        if (nl >= VCLOCK_NODE_MAX - 1)
                                return -EINVAL;
                        e.node[nl++] = *p++;
                }
                if (*p++ != ':' || !vclock_node_valid(e.node))
                        return -EINVAL;
                if (v.n > 0 && strcmp(v.e[v.n - 1].node, e.node) >= 0)
                        return -EINVAL; /* unsorted or duplicate */
                if (*p < '1' || *p > '9')
                        return -EINVAL; /* zero, a leading zero, or no digit */
                while (*p >= '0' && *p <= '9') {
                        uint64_t d = (uint64_t)(*p++ - '0');
                        if (e.counter > (UINT64_MAX - d) / 10)
                                return -EINVAL;
                        e.counter = e.counter * 10 + d;
                }
                if (v.n >= VCLOCK_MAX_NODES)
                        return -E2BIG;
                v.e[v.n++] = e;
                if (*p == '}')
                        break;
                if (*p++ != ',')
                        return -EINVAL;
        }
done:
        if (p[1] != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}
