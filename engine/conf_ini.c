/* Reading the conf's INI text (libinih) into sections and entries with line numbers, and
 * collecting every FILE:LINE error instead of stopping at the first. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cdcsync/text.h"
#include "conf_ini.h"

/* Debian's libinih reads its line limit at run time and defaults to 200 bytes, too short for a
 * libpq DSN; longer lines than this are reported, never split. */
#define CONF_MAX_LINE 4096
#define CONF_MAX_ERRORS 100
/* A conf is a page or two of text; anything near this size is another file given by mistake. Read
 * no further than this whatever the file claims (a /proc file says 0 bytes). */
#define CONF_MAX_FILE (1024 * 1024)

enum { CUR_NONE = -1, CUR_IGNORED = -2 };

void *conf_grow(ConfParser *p, void *arr, int n, size_t size) {
        void *a = reallocarray(arr, (size_t)n + 1, size);
        if (!a)
                p->oom = true;
        return a;
}

void conf_err(ConfParser *p, int line, const char *fmt, ...) {
        char msg[1024], esc[1024], path[512];
        va_list ap;
        if (p->nerrors >= CONF_MAX_ERRORS)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* Whatever a value held, the terminal and the journal get text. */
        text_escape(msg, esc, sizeof(esc));
        text_escape(p->path, path, sizeof(path));
        ConfError *e = conf_grow(p, p->errors, p->nerrors, sizeof(*e));
        if (!e)
                return;
        p->errors = e;
        if (asprintf(&e[p->nerrors].text, "%s:%d: %s", path, line, esc) < 0) {
                p->oom = true;
                return;
        }
        e[p->nerrors].line = line;
        e[p->nerrors].seq = p->nerrors;
        p->nerrors++;
}

bool conf_valid_name(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > CONF_NAME_MAX)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
                        return false;
        return true;
}

char *conf_trim(char *s) {
        while (isspace((unsigned char)*s))
                s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
                s[--n] = '\0';
        return s;
}

/* Optimal string alignment distance, for "did you mean"; long strings are never close. */
int conf_edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        int d[33][33];
        if (la > 32 || lb > 32)
                return 99;
        for (size_t i = 0; i <= la; i++)
                for (size_t j = 0; j <= lb; j++) {
                        if (i == 0 || j == 0) {
                                d[i][j] = (int)(i + j);
                                continue;
                        }
                        int cost = a[i - 1] != b[j - 1];
                        int v = d[i - 1][j - 1] + cost;
                        if (d[i - 1][j] + 1 < v)
                                v = d[i - 1][j] + 1;
                        if (d[i][j - 1] + 1 < v)
                                v = d[i][j - 1] + 1;
                        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                                v = d[i - 2][j - 2] + 1;
                        d[i][j] = v;
                }
        return d[la][lb];
}

/* A new [section] header at the current line (s starts with '['). */
static void section_begin(ConfParser *p, char *s) {
        char *end = strchr(s, ']');
        p->cur = CUR_IGNORED;
        if (!end) {
                conf_err(p, p->lineno, "section header has no closing ']' — write [NAME]");
                return;
        }
        *end = '\0';
        char *name = conf_trim(s + 1), *dot = strchr(name, '.');
        ConfSectionKind kind;
        if (strcmp(name, "service") == 0) {
                kind = SEC_SERVICE;
        } else if (dot && (size_t)(dot - name) == 9 && strncmp(name, "connector", 9) == 0) {
                kind = SEC_CONNECTOR;
        } else if (dot && (size_t)(dot - name) == 8 && strncmp(name, "pipeline", 8) == 0) {
                kind = SEC_PIPELINE;
        } else {
                conf_err(p, p->lineno,
                         "unknown section [%s] — use [service], [connector.NAME] or "
                         "[pipeline.NAME]",
                         name);
                return;
        }
        if (kind != SEC_SERVICE && !conf_valid_name(dot + 1)) {
                conf_err(p, p->lineno, "bad name in [%s] — use 1 to %d letters, digits, '_' or '-'", name,
                         CONF_NAME_MAX);
                return;
        }
        const char *sname = kind == SEC_SERVICE ? name : dot + 1;
        for (int i = 0; i < p->nsections; i++)
                if (p->sections[i].kind == kind && strcmp(p->sections[i].name, sname) == 0) {
                        conf_err(p, p->lineno,
                                 "duplicate section [%s] (first at line %d) — merge "
                                 "them into one",
                                 name, p->sections[i].line);
                        return;
                }
        ConfSection *a = conf_grow(p, p->sections, p->nsections, sizeof(*a));
        if (!a)
                return;
        p->sections = a;
        a[p->nsections] = (ConfSection){.kind = kind, .name = strdup(sname), .line = p->lineno};
        if (!a[p->nsections].name)
                p->oom = true;
        p->cur = p->nsections++;
}

/* Hands inih one line at a time, so p->lineno is the line of every handler call. Lines inih
 * would reject or split are reported here (all of them, with their line) and handed on as blank
 * comments; section headers are tracked here too, since inih does not report them. */
static char *conf_reader(char *str, int num, void *stream) {
        ConfParser *p = stream;
        size_t n = 0;
        bool nul = false, longer = false, any = false;
        int c = 0;
        /* Byte by byte into a fixed buffer: a line with no end (/dev/zero, a binary file) costs
         * no memory, and the whole read stops at CONF_MAX_FILE. */
        while (!p->too_big && (c = getc(p->f)) != EOF) {
                any = true;
                if (++p->nread > CONF_MAX_FILE) {
                        p->too_big = true;
                        conf_err(p, p->lineno + 1,
                                 "the file goes on past %d bytes — a conf is a page or two of text: check that "
                                 "-c names the conf file",
                                 CONF_MAX_FILE);
                        return NULL;
                }
                if (c == '\0')
                        nul = true;
                else if (n < CONF_MAX_LINE + 1)
                        p->buf[n++] = (char)c;
                else
                        longer = true;
                if (c == '\n')
                        break;
        }
        if (!any)
                return NULL;
        p->buf[n] = '\0';
        char *s = p->buf;
        p->lineno++;
        if (p->lineno == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3, n -= 3;
        size_t text = n, at;
        while (text > 0 && (s[text - 1] == '\n' || s[text - 1] == '\r'))
                text--;
        int bad = longer ? 0 : text_check(s, text, &at);
        /* A refused [section] header: its keys are not put into the section before it. */
        if ((nul || longer || bad) && s[strspn(s, " \t")] == '[')
                p->cur = CUR_IGNORED;
        if (nul) {
                conf_err(p, p->lineno, "line holds a NUL byte — save the file as text");
                s = "";
        } else if (longer) {
                conf_err(p, p->lineno, "line is longer than %d characters — shorten it", num - 3);
                s = "";
        } else if (bad) {
                conf_err(p, p->lineno, "byte %zu is %s (0x%02x) — %s", at + 1,
                         bad == TEXT_NOT_UTF8 ? "not UTF-8 text" : "a control character", (unsigned char)s[at],
                         bad == TEXT_NOT_UTF8 ? "save the file as UTF-8" : "remove it (a conf is plain text)");
                s = "";
        }
        /* Leading blanks are dropped: an indented key is a key, not an inih continuation line. */
        while (*s == ' ' || *s == '\t')
                s++;
        if (strlen(s) + 2 > (size_t)num) {
                conf_err(p, p->lineno, "line is longer than %d characters — shorten it", num - 3);
                s = "";
        } else if (*s == '[') {
                section_begin(p, s);
                s = "";
        } else if (*s && !strchr(";#\r\n", *s)) {
                /* inih takes the first '=' or ':' not inside a " ;" comment as the separator */
                size_t i = 0;
                while (s[i] && s[i] != '=' && s[i] != ':' && !(s[i] == ';' && isspace((unsigned char)s[i - 1])))
                        i++;
                if (s[i] != '=' && s[i] != ':') {
                        conf_err(p, p->lineno,
                                 "cannot read this line — write KEY = VALUE, [SECTION] "
                                 "or a ; comment");
                        s = "";
                }
        }
        snprintf(str, (size_t)num, "%s", s);
        return str;
}

static int conf_handler(void *user, const char *section, const char *name, const char *value) {
        ConfParser *p = user;
        (void)section; /* the reader tracks sections, with their lines */
        if (p->cur == CUR_NONE) {
                conf_err(p, p->lineno,
                         "%s is outside any section — put it under [service], "
                         "[connector.NAME] or [pipeline.NAME]",
                         name);
                return 1;
        }
        if (p->cur == CUR_IGNORED)
                return 1; /* its section was already reported */
        if (!*name) {
                conf_err(p, p->lineno, "no key before '=' — write KEY = VALUE");
                return 1;
        }
        ConfSection *sec = &p->sections[p->cur];
        for (int i = 0; i < sec->nentries; i++)
                if (strcmp(sec->entries[i].key, name) == 0) {
                        conf_err(p, p->lineno, "duplicate key %s (first set at line %d) — keep one", name,
                                 sec->entries[i].line);
                        return 1;
                }
        ConfEntry *e = conf_grow(p, sec->entries, sec->nentries, sizeof(*e));
        if (!e)
                return 1;
        sec->entries = e;
        e[sec->nentries] = (ConfEntry){.key = strdup(name), .value = strdup(value), .line = p->lineno};
        if (!e[sec->nentries].key || !e[sec->nentries].value)
                p->oom = true;
        sec->nentries++;
        return 1;
}

static int error_cmp(const void *a, const void *b) {
        const ConfError *x = a, *y = b;
        return x->line != y->line ? (x->line > y->line) - (x->line < y->line) : x->seq - y->seq;
}

int conf_ini_read(ConfParser *p, FILE *errout) {
        struct stat st;
        char path[512];
        int r;

        p->cur = CUR_NONE;
        if (!*p->path) {
                fprintf(errout, "no conf file given — pass -c FILE\n");
                return -EINVAL;
        }
        if (!(p->dir = strdup(p->path)))
                return -ENOMEM;
        text_escape(p->path, path, sizeof(path));
        char *slash = strrchr(p->dir, '/');
        if (slash)
                slash[slash == p->dir] = '\0'; /* "/x.conf": the directory is "/" */
        else
                p->dir[0] = '.', p->dir[1] = '\0'; /* fits: the path is not empty */
        /* O_NONBLOCK: a FIFO must not hang the open; a regular file ignores the flag. */
        int fd = open(p->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                if (fd >= 0)
                        close(fd);
                fprintf(errout, "%s: cannot read: %s — check the path and its permissions\n", path, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                fprintf(errout, "%s: is %s, not a file — give the path of the conf file\n", path,
                        S_ISDIR(st.st_mode)    ? "a directory"
                        : S_ISFIFO(st.st_mode) ? "a pipe (FIFO)"
                        : S_ISCHR(st.st_mode)  ? "a character device"
                        : S_ISBLK(st.st_mode)  ? "a block device"
                        : S_ISSOCK(st.st_mode) ? "a socket"
                                               : "not a regular file");
                return -EINVAL;
        }
        if (st.st_size > CONF_MAX_FILE) {
                close(fd);
                fprintf(errout,
                        "%s: is %lld bytes, more than the %d a conf may hold — check that -c names the conf file\n",
                        path, (long long)st.st_size, CONF_MAX_FILE);
                return -EINVAL;
        }
        if (!(p->f = fdopen(fd, "r"))) {
                r = -errno;
                close(fd);
                return r;
        }
        if (!(p->buf = malloc(CONF_MAX_LINE + 2)))
                return -ENOMEM;
        p->others_can_read = (st.st_mode & 077) != 0;
        ini_max_line = CONF_MAX_LINE;
        r = ini_parse_stream(conf_reader, p, conf_handler, p);
        if (ferror(p->f)) {
                fprintf(errout, "%s: read error — check the file\n", path);
                return -EIO;
        }
        if (r != 0) /* cannot happen: the reader hands inih only lines it can parse */
                conf_err(p, r > 0 ? r : 1, "cannot parse this line — check its syntax");
        return p->oom ? -ENOMEM : 0;
}

void conf_ini_report(ConfParser *p, FILE *errout) {
        qsort(p->errors, (size_t)p->nerrors, sizeof(*p->errors), error_cmp);
        for (int i = 0; i < p->nerrors; i++)
                fprintf(errout, "%s\n", p->errors[i].text);
        if (p->nerrors == CONF_MAX_ERRORS)
                fprintf(errout, "%s: too many errors, stopped after %d\n", p->path, CONF_MAX_ERRORS);
}

void conf_ini_done(ConfParser *p) {
        for (int i = 0; i < p->nsections; i++) {
                for (int j = 0; j < p->sections[i].nentries; j++) {
                        ConfEntry *e = &p->sections[i].entries[j];
                        free(e->key);
                        free(e->value);
                        if (e->expanded) /* may hold a secret */
                                explicit_bzero(e->expanded, strlen(e->expanded));
                        free(e->expanded);
                }
                free(p->sections[i].entries);
                free(p->sections[i].name);
        }
        free(p->sections);
        for (int i = 0; i < p->nerrors; i++)
                free(p->errors[i].text);
        free(p->errors);
        free(p->buf);
        free(p->dir);
        if (p->f)
                fclose(p->f);
}
