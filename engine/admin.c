/* The admin API's decisions (routes, credentials) and the conflict log reader (see admin.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cdcsync/admin.h"

const char *const admin_actions[] = {"pause", "resume", "restart", "resnapshot", NULL};

static const char READ_METHODS[] = "GET, HEAD";
static const char ACTION_METHODS[] = "POST";

static bool is_read(const char *method) {
        return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

int admin_route(const char *method, const char *url, AdminRoute *ret, bool *ret_method_ok) {
        AdminRoute r = {0};
        static const char PIPELINES[] = "/api/pipelines";
        if (strcmp(url, "/") == 0) {
                r.kind = ADMIN_ROUTE_CONSOLE;
                r.allow = READ_METHODS;
        } else if (strcmp(url, PIPELINES) == 0) {
                r.kind = ADMIN_ROUTE_PIPELINES;
                r.allow = READ_METHODS;
        } else if (strcmp(url, "/api/conflicts") == 0) {
                r.kind = ADMIN_ROUTE_CONFLICTS;
                r.allow = READ_METHODS;
        } else if (strncmp(url, PIPELINES, sizeof(PIPELINES) - 1) == 0 && url[sizeof(PIPELINES) - 1] == '/') {
                /* /api/pipelines/NAME/ACTION */
                const char *name = url + sizeof(PIPELINES);
                const char *slash = strchr(name, '/');
                if (!slash || slash == name || (size_t)(slash - name) >= sizeof(r.pipeline))
                        return -ENOENT;
                for (const char *const *a = admin_actions; *a; a++)
                        if (strcmp(slash + 1, *a) == 0)
                                r.action = *a;
                if (!r.action)
                        return -ENOENT;
                memcpy(r.pipeline, name, (size_t)(slash - name));
                r.pipeline[slash - name] = '\0';
                r.kind = ADMIN_ROUTE_ACTION;
                r.mutation = true;
                r.allow = ACTION_METHODS;
        } else if (strncmp(url, "/api/", 5) == 0 || strcmp(url, "/api") == 0) {
                return -ENOENT;
        } else {
                return 0;
        }
        *ret_method_ok = r.mutation ? strcmp(method, "POST") == 0 : is_read(method);
        *ret = r;
        return 1;
}

bool admin_ct_equal(const char *given, const char *expected) {
        size_t glen = strlen(given), elen = strlen(expected);
        unsigned char diff = glen != elen;
        for (size_t i = 0; i < elen; i++) {
                unsigned char g = i < glen ? (unsigned char)given[i] : 0;
                diff |= g ^ (unsigned char)expected[i];
        }
        return diff == 0;
}

/* Both compared, always: which one was wrong must not show in the timing. */
static bool creds_match(const AdminCreds *c, const char *user, const char *pass) {
        if (!c || !c->user || !c->password || !user || !pass)
                return false;
        bool u = admin_ct_equal(user, c->user);
        bool p = admin_ct_equal(pass, c->password);
        return u & p;
}

AdminAuth admin_auth(const AdminCreds *admin, const AdminCreds *metrics, const char *user, const char *pass,
                     bool mutation) {
        bool have_admin = admin && admin->user && admin->password;
        bool have_metrics = metrics && metrics->user && metrics->password;
        if (mutation) {
                const AdminCreds *c = have_admin ? admin : have_metrics ? metrics : NULL;
                if (!c)
                        return ADMIN_AUTH_UNCONFIGURED;
                return creds_match(c, user, pass) ? ADMIN_AUTH_OK : ADMIN_AUTH_DENIED;
        }
        if (!have_metrics)
                return ADMIN_AUTH_OK;
        return creds_match(metrics, user, pass) || creds_match(admin, user, pass) ? ADMIN_AUTH_OK : ADMIN_AUTH_DENIED;
}

int admin_parse_limit(const char *text, int *ret) {
        if (!text) {
                *ret = ADMIN_CONFLICTS_DEFAULT;
                return 0;
        }
        if (text[0] < '0' || text[0] > '9' || strlen(text) > 9)
                return -EINVAL;
        char *end;
        long v = strtol(text, &end, 10);
        if (*end || v < 1 || v > ADMIN_CONFLICTS_MAX)
                return -EINVAL;
        *ret = (int)v;
        return 0;
}

/* ---- the conflict log, read backwards ---- */

#define BLOCK (64 * 1024)
#define LINE_MAX_BYTES (64 * 1024)          /* a record is far smaller (two version vectors) */
#define SCAN_MAX ((off_t)256 * 1024 * 1024) /* bytes read at most per request */

typedef struct {
        const char *pipeline;
        int limit;
        json_t *arr;
} Collect;

/* One whole line (without its newline). Returns 1 when enough records were collected. */
static int take_line(Collect *c, const char *line, size_t len) {
        if (len == 0)
                return 0;
        json_error_t e;
        json_t *o = json_loadb(line, len, 0, &e);
        if (!json_is_object(o)) {
                json_decref(o);
                return 0;
        }
        const char *p = json_string_value(json_object_get(o, "pipeline"));
        if (c->pipeline && (!p || strcmp(p, c->pipeline) != 0)) {
                json_decref(o);
                return 0;
        }
        if (json_array_append_new(c->arr, o) < 0)
                return -ENOMEM;
        return json_array_size(c->arr) >= (size_t)c->limit;
}

static int read_at(int fd, char *buf, size_t n, off_t at) {
        size_t got = 0;
        while (got < n) {
                ssize_t r = pread(fd, buf + got, n - got, at + (off_t)got);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        return -EIO; /* the file shrank under us */
                got += (size_t)r;
        }
        return 0;
}

int admin_conflicts(const char *path, const char *pipeline, int limit, json_t **ret) {
        int r = 0, fd = -1;
        char *block = NULL, *carry = NULL, *line = NULL;
        size_t carry_len = 0;
        bool carry_long = false, complete = true;
        Collect c = {.pipeline = pipeline, .limit = limit, .arr = json_array()};
        if (!c.arr)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = errno == ENOENT ? 0 : -errno;
                goto done;
        }
        struct stat st;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto done;
        }
        block = malloc(BLOCK);
        carry = malloc(LINE_MAX_BYTES);
        line = malloc(BLOCK + LINE_MAX_BYTES);
        if (!block || !carry || !line) {
                r = -ENOMEM;
                goto done;
        }
        off_t pos = S_ISREG(st.st_mode) ? st.st_size : 0, scanned = 0;
        while (pos > 0 && r == 0) {
                if (scanned >= SCAN_MAX) {
                        complete = false;
                        break;
                }
                size_t n = pos > BLOCK ? BLOCK : (size_t)pos;
                pos -= (off_t)n;
                scanned += (off_t)n;
                r = read_at(fd, block, n, pos);
                if (r < 0)
                        break;
                size_t end = n;
                for (size_t i = n; i-- > 0 && r == 0;) {
                        if (block[i] != '\n')
                                continue;
                        /* The line block[i+1..end) continued by what the later block began with. */
                        size_t a = end - (i + 1);
                        if (!carry_long && a + carry_len <= LINE_MAX_BYTES) {
                                memcpy(line, block + i + 1, a);
                                memcpy(line + a, carry, carry_len);
                                r = take_line(&c, line, a + carry_len);
                        }
                        carry_len = 0;
                        carry_long = false;
                        end = i;
                }
                if (r != 0)
                        break;
                /* block[0..end) begins a line that started in an earlier block. */
                if (carry_long || end + carry_len > LINE_MAX_BYTES) {
                        carry_long = true;
                        carry_len = 0;
                } else {
                        memmove(carry + end, carry, carry_len);
                        memcpy(carry, block, end);
                        carry_len += end;
                }
        }
        if (r == 0 && pos == 0 && complete && !carry_long && carry_len > 0)
                r = take_line(&c, carry, carry_len);
        if (r > 0)
                r = 0;
done:
        free(block);
        free(carry);
        free(line);
        if (fd >= 0)
                close(fd);
        if (r < 0) {
                json_decref(c.arr);
                return r;
        }
        json_t *o = json_pack("{s:o, s:b}", "conflicts", c.arr, "complete", complete);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}
