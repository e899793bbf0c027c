/* Row versions: building, encoding, and the deterministic resolver used on every applied change. */
#include <errno.h>
#include <string.h>

#include "cdcsync/version.h"

#define VERSION_FORMAT 1
#define FLAG_DELETED 0x01
#define FLAG_WVV 0x02 /* the winner's own vector follows (it differs from vv) */

const char *version_verdict_name(VersionVerdict v) {
        switch (v) {
        case VERSION_APPLY: return "apply";
        case VERSION_SKIP: return "skip";
        case VERSION_CONFLICT_APPLY: return "conflict_apply";
        case VERSION_CONFLICT_SKIP: return "conflict_skip";
        }
        return "unknown";
}

int version_next(const Version *prev, const char *origin, uint64_t counter, int64_t commit_ts, uint32_t seq,
                 bool deleted, Version *ret) {
        Version v = {0};
        int r;
        if (!vclock_node_valid(origin) || counter == 0)
                return -EINVAL;
        if (prev) {
                uint64_t old = vclock_get(&prev->vv, origin);
                bool same_txn = counter == old;
                if (counter < old || (same_txn && (strcmp(prev->origin, origin) != 0 || seq <= prev->seq)))
                        return -EINVAL;
                v.vv = prev->vv;
                /* a later change of the same source transaction keeps its commit time; seq orders it */
                v.ts = commit_ts;
                /* prev->ts was read from the state store: at INT64_MAX (a time stored before
                 * sources clamped theirs) it stays there rather than overflow */
                if (same_txn ? v.ts < prev->ts : v.ts <= prev->ts)
                        v.ts = same_txn || prev->ts == INT64_MAX ? prev->ts : prev->ts + 1;
        } else {
                v.ts = commit_ts;
        }
        r = vclock_set(&v.vv, origin, counter);
        if (r < 0)
                return r;
        v.wvv = v.vv;
        memcpy(v.origin, origin, strlen(origin) + 1);
        v.seq = seq;
        v.deleted = deleted;
        *ret = v;
        return 0;
}

int version_encode(const Version *v, uint8_t *buf, size_t size) {
        bool wvv = !vclock_equal(&v->vv, &v->wvv);
        size_t o = 0, ol = strnlen(v->origin, sizeof(v->origin));
        int r;
        if (size < 2)
                return -ENOBUFS;
        buf[o++] = VERSION_FORMAT;
        buf[o++] = (uint8_t)((v->deleted ? FLAG_DELETED : 0) | (wvv ? FLAG_WVV : 0));
        r = vclock_encode(&v->vv, buf + o, size - o);
        if (r < 0)
                return r;
        o += (size_t)r;
        if (wvv) {
                r = vclock_encode(&v->wvv, buf + o, size - o);
                if (r < 0)
                        return r;
                o += (size_t)r;
        }
        if (size - o < 8 + 1 + ol + 5)
                return -ENOBUFS;
        uint64_t ts = (uint64_t)v->ts;
        for (int i = 7; i >= 0; i--)
                buf[o++] = (uint8_t)(ts >> (i * 8));
        buf[o++] = (uint8_t)ol;
        memcpy(buf + o, v->origin, ol);
        o += ol;
        uint32_t s = v->seq;
        do {
                buf[o++] = (uint8_t)((s & 0x7f) | (s > 0x7f ? 0x80 : 0));
                s >>= 7;
        } while (s);
        return (int)o;
}

int version_decode(const uint8_t *buf, size_t len, Version *ret) {
        Version v = {0};
        size_t o = 0;
        int r;
        if (len < 2 || buf[0] != VERSION_FORMAT || (buf[1] & ~(FLAG_DELETED | FLAG_WVV)))
                return -EBADMSG;
        uint8_t flags = buf[1];
        o = 2;
        r = vclock_decode(buf + o, len - o, &v.vv);
        if (r < 0)
                return r;
        o += (size_t)r;
        if (flags & FLAG_WVV) {
                r = vclock_decode(buf + o, len - o, &v.wvv);
                if (r < 0)
                        return r;
                o += (size_t)r;
                if (vclock_equal(&v.vv, &v.wvv))
                        return -EBADMSG; /* not canonical */
        } else {
                v.wvv = v.vv;
        }
        if (len - o < 9)
                return -EBADMSG;
        uint64_t ts = 0;
        for (int i = 0; i < 8; i++)
                ts = ts << 8 | buf[o++];
        v.ts = (int64_t)ts;
        size_t ol = buf[o++];
        if (ol >= sizeof(v.origin) || len - o < ol)
                return -EBADMSG;
        memcpy(v.origin, buf + o, ol);
        v.origin[ol] = '\0';
        o += ol;
        if (strlen(v.origin) != ol || (ol > 0 && !vclock_node_valid(v.origin)))
                return -EBADMSG; /* a NUL inside would cut the name: another spelling */
        uint32_t s = 0;
        for (int shift = 0;; shift += 7) {
                if (o >= len || shift > 28)
                        return -EBADMSG;
                uint8_t b = buf[o++];
                if (shift == 28 && (b & 0x70))
                        return -EBADMSG;
                s |= (uint32_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        if (b == 0 && shift > 0)
                                return -EBADMSG; /* not minimal: version_encode never writes it */
                        break;
                }
        }
        v.seq = s;
        v.deleted = flags & FLAG_DELETED;
        if (o != len)
                return -EBADMSG;
        *ret = v;
        return 0;
}

bool version_equal(const Version *a, const Version *b) {
        return vclock_equal(&a->vv, &b->vv) && vclock_equal(&a->wvv, &b->wvv) && a->ts == b->ts &&
               strcmp(a->origin, b->origin) == 0 && a->seq == b->seq && a->deleted == b->deleted;
}

static int rank(const char *origin, const char *const *priority, int npriority) {
        for (int i = 0; i < npriority; i++)
                if (strcmp(priority[i], origin) == 0)
                        return i;
        return npriority;
}

static int cmp_u64(uint64_t a, uint64_t b) {
        return a < b ? -1 : a > b;
}

/* Compares two vectors as tuples of counters taken in priority order: the listed connectors
 * first, then every other node by name. A causal successor always compares greater, so this is a
 * total order that extends causality. */
static int cmp_lex(const VClock *a, const VClock *b, const char *const *priority, int npriority) {
        for (int i = 0; i < npriority; i++) {
                int c = cmp_u64(vclock_get(a, priority[i]), vclock_get(b, priority[i]));
                if (c)
                        return c;
        }
        uint32_t i = 0, j = 0;
        while (i < a->n || j < b->n) {
                int c = i >= a->n ? 1 : j >= b->n ? -1 : strcmp(a->e[i].node, b->e[j].node);
                const char *node = c <= 0 ? a->e[i].node : b->e[j].node;
                uint64_t ca = c <= 0 ? a->e[i].counter : 0, cb = c >= 0 ? b->e[j].counter : 0;
                if (c <= 0)
                        i++;
                if (c >= 0)
                        j++;
                if (rank(node, priority, npriority) < npriority)
                        continue;
                int d = cmp_u64(ca, cb);
                if (d)
                        return d;
        }
        return 0;
}

/* The total order that settles conflicts: > 0 when a wins over b, 0 only for the same write. */
static int cmp_winner(const Version *a, const Version *b, ResolvePolicy resolve, const char *const *priority,
                      int npriority) {
        int c = 0;
        if (resolve == RESOLVE_PRIORITY)
                c = cmp_lex(&a->wvv, &b->wvv, priority, npriority);
        if (!c)
                c = a->ts < b->ts ? -1 : a->ts > b->ts;
        if (!c) /* a better (lower) priority rank wins */
                c = -(rank(a->origin, priority, npriority) - rank(b->origin, priority, npriority));
        if (!c)
                c = strcmp(a->origin, b->origin);
        if (!c && resolve != RESOLVE_PRIORITY)
                c = cmp_lex(&a->wvv, &b->wvv, priority, npriority);
        if (!c)
                c = cmp_u64(a->seq, b->seq);
        if (!c)
                c = (int)a->deleted - (int)b->deleted;
        return c < 0 ? -1 : c > 0;
}

int version_decide(const Version *stored, const Version *incoming, ConflictPolicy policy, ResolvePolicy resolve,
                   const char *const *priority, int npriority, Version *ret_merged, const char **ret_resolution) {
        VClock join;
        VersionVerdict verdict;
        const char *resolution = NULL;
        int r;

        if (!stored) {
                if (ret_merged)
                        *ret_merged = *incoming;
                if (ret_resolution)
                        *ret_resolution = NULL;
                return VERSION_APPLY;
        }
        r = vclock_merge(&stored->vv, &incoming->vv, &join);
        if (r < 0)
                return r;
        /* how incoming relates to what is stored (the join of everything applied so far) */
        VClockOrder order = vclock_compare(&incoming->vv, &stored->vv);
        if (policy == CONFLICT_TIMESTAMP)
                resolve = RESOLVE_TIMESTAMP;
        int win = cmp_winner(incoming, stored, resolve, priority, npriority);

        switch (policy) {
        case CONFLICT_TIMESTAMP:
                /* last writer wins whatever the vectors say; they only tell a conflict from a
                 * plain update for the metrics */
                if (win > 0)
                        verdict =
                                order == VCLOCK_AFTER || order == VCLOCK_EQUAL ? VERSION_APPLY : VERSION_CONFLICT_APPLY;
                else
                        verdict = order == VCLOCK_BEFORE || order == VCLOCK_EQUAL || win == 0 ? VERSION_SKIP
                                                                                              : VERSION_CONFLICT_SKIP;
                break;
        case CONFLICT_NONE:
        case CONFLICT_VERSION_VECTOR:
        default:
                if (order == VCLOCK_AFTER)
                        verdict = VERSION_APPLY;
                else if (order == VCLOCK_BEFORE)
                        verdict = VERSION_SKIP;
                else if (order == VCLOCK_EQUAL)
                        /* the same write, or a later change of the same source transaction */
                        verdict = win > 0 ? VERSION_APPLY : VERSION_SKIP;
                else if (policy == CONFLICT_NONE)
                        verdict = VERSION_CONFLICT_APPLY;
                else
                        verdict = win > 0 ? VERSION_CONFLICT_APPLY : VERSION_CONFLICT_SKIP;
                break;
        }
        if (verdict == VERSION_CONFLICT_APPLY || verdict == VERSION_CONFLICT_SKIP)
                resolution = policy == CONFLICT_NONE ? "none" : resolve == RESOLVE_PRIORITY ? "priority" : "timestamp";
        if (ret_merged) {
                bool take = verdict == VERSION_APPLY || verdict == VERSION_CONFLICT_APPLY;
                Version m = take ? *incoming : *stored;
                m.vv = join;
                *ret_merged = m;
        }
        if (ret_resolution)
                *ret_resolution = resolution;
        return verdict;
}
