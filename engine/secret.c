/* Secrets in the conf: ${ENV} expansion, password files, systemd credentials, literal passwords. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cdcsync/secret.h"

/* Values are conf lines; anything near this is a mistake, not a value. */
#define EXPAND_MAX (64 * 1024)

/* Length of the "${NAME}" reference at s, or 0 when s does not start one. */
static size_t env_ref_len(const char *s) {
        if (s[0] != '$' || s[1] != '{' || !(isalpha((unsigned char)s[2]) || s[2] == '_'))
                return 0;
        size_t i = 3;
        while (isalnum((unsigned char)s[i]) || s[i] == '_')
                i++;
        return s[i] == '}' ? i + 1 : 0;
}

int secret_expand_env(const char *raw, char **ret, char *err, size_t errlen) {
        size_t cap = strlen(raw) + 1, len = 0;
        char *out = malloc(cap);
        int r = -ENOMEM;

        if (!out)
                goto out;
        for (const char *s = raw; *s;) {
                const char *add = s;
                size_t addlen = 1, ref = env_ref_len(s);
                if (ref > 0) {
                        char name[256];
                        snprintf(name, sizeof(name), "%.*s", (int)(ref - 3), s + 2);
                        add = getenv(name);
                        if (!add) {
                                snprintf(err, errlen,
                                         "environment variable %s is not set — export it before "
                                         "starting cdcsync (systemd: Environment= or EnvironmentFile=)",
                                         name);
                                r = -EINVAL;
                                goto out;
                        }
                        addlen = strlen(add);
                        s += ref;
                } else if (s[0] == '$' && s[1] == '{') {
                        snprintf(err, errlen,
                                 "malformed ${...} — write ${NAME} with letters, digits "
                                 "and '_', or $${ for a literal ${");
                        r = -EINVAL;
                        goto out;
                } else if (s[0] == '$' && s[1] == '$') {
                        s += 2; /* "$$" is a literal '$' */
                } else {
                        s++;
                }
                if (len + addlen + 1 > EXPAND_MAX) {
                        snprintf(err, errlen,
                                 "value is longer than %d bytes after expansion — "
                                 "shorten it",
                                 EXPAND_MAX);
                        r = -EINVAL;
                        goto out;
                }
                if (len + addlen + 1 > cap) {
                        size_t ncap = (len + addlen + 1) * 2;
                        char *n = realloc(out, ncap);
                        if (!n)
                                goto out;
                        out = n;
                        cap = ncap;
                }
                memcpy(out + len, add, addlen);
                len += addlen;
        }
        out[len] = '\0';
        *ret = out;
        out = NULL;
        r = 0;
out:
        free(out);
        return r;
}

int secret_read_file(const char *value, const char *base_dir, char **ret, char *err, size_t errlen) {
        const char *creds = getenv("CREDENTIALS_DIRECTORY");
        char path[4096];
        char *buf = NULL;
        ssize_t n = 0;
        int fd = -1, r;

        if (!strchr(value, '/') && creds && *creds)
                r = snprintf(path, sizeof(path), "%s/%s", creds, value);
        else if (value[0] != '/')
                r = snprintf(path, sizeof(path), "%s/%s", base_dir, value);
        else
                r = snprintf(path, sizeof(path), "%s", value);
        if (r < 0 || (size_t)r >= sizeof(path)) {
                snprintf(err, errlen, "path of %s is too long — use a shorter path", value);
                r = -ENAMETOOLONG;
                goto out;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot read %s: %s — create it, readable by the cdcsync user", path,
                         strerror(-r));
                goto out;
        }
        buf = malloc(SECRET_MAX_FILE + 2);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        for (;;) {
                ssize_t k = read(fd, buf + n, SECRET_MAX_FILE + 1 - (size_t)n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = -errno;
                        snprintf(err, errlen, "cannot read %s: %s — make it a readable file", path, strerror(-r));
                        goto out;
                }
                if (k == 0)
                        break;
                n += k;
                if (n > SECRET_MAX_FILE) {
                        snprintf(err, errlen,
                                 "%s is larger than %d bytes — it should hold only the "
                                 "password",
                                 path, SECRET_MAX_FILE);
                        r = -EFBIG;
                        goto out;
                }
        }
        if (n > 0 && buf[n - 1] == '\n')
                n--;
        buf[n] = '\0';
        if (n == 0 || strlen(buf) != (size_t)n) {
                snprintf(err, errlen, "%s is %s — write the password into it", path,
                         n == 0 ? "empty" : "not text (it holds a NUL byte)");
                r = -EINVAL;
                goto out;
        }
        *ret = buf;
        buf = NULL;
        r = 0;
out:
        if (buf) {
                explicit_bzero(buf, SECRET_MAX_FILE + 2);
                free(buf);
        }
        if (fd >= 0)
                close(fd);
        return r;
}

/* Same as secret_is_literal() on the first len bytes of s. */
static bool literal_n(const char *s, size_t len) {
        for (size_t i = 0; i < len;) {
                size_t ref = env_ref_len(s + i);
                if (ref == 0 || i + ref > len)
                        return true;
                i += ref;
        }
        return false;
}

bool secret_is_literal(const char *raw) {
        return literal_n(raw, strlen(raw));
}

/* A URI: postgres[ql]://user:PASSWORD@host/db?password=PASSWORD */
static bool uri_has_password(const char *s) {
        const char *auth = strstr(s, "://") + 3;
        size_t authlen = strcspn(auth, "/?");
        const char *at = memchr(auth, '@', authlen);
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon && literal_n(colon + 1, (size_t)(at - colon - 1)))
                return true;
        for (const char *q = strchr(s, '?'); q; q = strchr(q, '&')) {
                q++;
                if (strncmp(q, "password=", 9) == 0 && literal_n(q + 9, strcspn(q + 9, "&")))
                        return true;
        }
        return false;
}

bool secret_dsn_has_password(const char *raw) {
        if (strncmp(raw, "postgres://", 11) == 0 || strncmp(raw, "postgresql://", 13) == 0)
                return uri_has_password(raw);
        /* keyword = value pairs; a value may be 'single quoted' with \ escapes (libpq's rules) */
        const char *s = raw;
        for (;;) {
                while (isspace((unsigned char)*s))
                        s++;
                if (!*s)
                        return false;
                const char *kw = s;
                while (*s && *s != '=' && !isspace((unsigned char)*s))
                        s++;
                size_t kwlen = (size_t)(s - kw);
                while (isspace((unsigned char)*s))
                        s++;
                if (*s != '=')
                        return false; /* not a conninfo libpq accepts either */
                s++;
                while (isspace((unsigned char)*s))
                        s++;
                const char *val = s;
                if (*s == '\'') {
                        for (s++; *s && *s != '\''; s++)
                                if (*s == '\\' && s[1])
                                        s++;
                        if (*s)
                                s++;
                } else {
                        while (*s && !isspace((unsigned char)*s))
                                s++;
                }
                size_t vallen = (size_t)(s - val);
                if (vallen >= 2 && val[0] == '\'') {
                        val++;
                        vallen -= 2;
                }
                if (kwlen == 8 && strncmp(kw, "password", 8) == 0 && literal_n(val, vallen))
                        return true;
        }
}
