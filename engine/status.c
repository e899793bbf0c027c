/* The `cdcsync status` client: one plain HTTP/1.0 GET of /status over a socket, printed as a table. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cdcsync/metrics.h"
#include "cdcsync/status.h"

#define CONNECT_TIMEOUT_MS 3000
#define READ_TIMEOUT_MS 5000
#define ANSWER_MAX (8 * 1024 * 1024) /* a status of thousands of pipelines fits many times */

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until the deadline; returns 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, int64_t deadline) {
        for (;;) {
                int64_t left = deadline - mono_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd p = {.fd = fd, .events = events};
                int n = poll(&p, 1, (int)left);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n > 0)
                        return 0;
        }
}

static int connect_to(const struct sockaddr_storage *addr, socklen_t len, int *ret_fd) {
        int r;
        int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *)addr, len) < 0) {
                if (errno != EINPROGRESS) {
                        r = -errno;
                        goto fail;
                }
                r = wait_fd(fd, POLLOUT, mono_ms() + CONNECT_TIMEOUT_MS);
                if (r < 0)
                        goto fail;
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
                        r = -errno;
                        goto fail;
                }
                if (soerr != 0) {
                        r = -soerr;
                        goto fail;
                }
        }
        *ret_fd = fd;
        return 0;
fail:
        close(fd);
        return r;
}

/* Sends the request (method, path, an Authorization header line or "") and reads the whole
 * answer (the server closes: HTTP/1.0). */
static int http_request(int fd, const char *method, const char *host, const char *path, const char *auth,
                        const char *body, char **ret, size_t *ret_len) {
        int r;
        char req[1024];
        size_t blen = body ? strlen(body) : 0;
        int n = snprintf(req, sizeof(req),
                         "%s %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: cdcsync-status\r\nAccept: application/json\r\n"
                         "%s%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                         method, path, host, auth, body ? "Content-Type: application/json\r\n" : "", blen);
        if (n < 0 || (size_t)n >= sizeof(req)) {
                explicit_bzero(req, sizeof(req));
                return -EINVAL;
        }
        int64_t deadline = mono_ms() + READ_TIMEOUT_MS;
        size_t sent = 0;
        /* the headers, then the body */
        while (sent < (size_t)n + blen) {
                const char *from = sent < (size_t)n ? req + sent : body + (sent - (size_t)n);
                size_t left = sent < (size_t)n ? (size_t)n - sent : (size_t)n + blen - sent;
                ssize_t w = send(fd, from, left, MSG_NOSIGNAL);
                if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                        r = wait_fd(fd, POLLOUT, deadline);
                        if (r < 0) {
                                explicit_bzero(req, sizeof(req));
                                return r;
                        }
                        continue;
                }
                if (w < 0) {
                        explicit_bzero(req, sizeof(req));
                        return -errno;
                }
                sent += (size_t)w;
        }
        explicit_bzero(req, sizeof(req)); /* it held the password */

        size_t cap = 16384, len = 0;
        char *buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len + 1 >= cap) {
                        if (cap >= ANSWER_MAX) {
                                r = -EFBIG;
                                goto out;
                        }
                        char *nb = realloc(buf, cap * 2);
                        if (!nb) {
                                r = -ENOMEM;
                                goto out;
                        }
                        buf = nb;
                        cap *= 2;
                }
                ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
                if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                        r = wait_fd(fd, POLLIN, deadline);
                        if (r < 0)
                                goto out;
                        continue;
                }
                if (got < 0) {
                        r = -errno;
                        goto out;
                }
                if (got == 0)
                        break;
                len += (size_t)got;
        }
        buf[len] = '\0';
        *ret = buf;
        *ret_len = len;
        buf = NULL;
        r = 0;
out:
        free(buf);
        return r;
}

/* "1.5s", "4m05s", "2h13m"; with "/16.0KiB" appended when bytes are pending. The number comes
 * from the answer: any double (negative, past any integer type) prints without undefined
 * behaviour. */
static void format_lag(double sec, json_int_t bytes, char *buf, size_t len) {
        char t[32], b[32] = "";
        if (!(sec >= 0)) /* negative, or NaN */
                snprintf(t, sizeof(t), "-");
        else if (sec < 60)
                snprintf(t, sizeof(t), "%.1fs", sec);
        else if (sec < 3600)
                snprintf(t, sizeof(t), "%dm%02ds", (int)(sec / 60), (int)sec % 60);
        else if (sec < 1e15) /* 31 million years: hours fit a long long */
                snprintf(t, sizeof(t), "%lldh%02dm", (long long)(sec / 3600), (int)fmod(sec, 3600) / 60);
        else
                snprintf(t, sizeof(t), "%.3gh", sec / 3600);
        if (bytes > 0) {
                static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
                double v = (double)bytes;
                int u = 0;
                while (v >= 1024 && u < 4) {
                        v /= 1024;
                        u++;
                }
                if (u == 0)
                        snprintf(b, sizeof(b), "/%lldB", (long long)bytes);
                else
                        snprintf(b, sizeof(b), "/%.1f%s", v, units[u]);
        }
        snprintf(buf, len, "%s%s", t, b);
}

enum { COL_NAME, COL_STATE, COL_SRC, COL_APP, COL_LAG, COL_RATE, NCOLS };

static const char *const headers[NCOLS] = {"PIPELINE", "STATE", "SOURCE_POS", "APPLIED_POS", "LAG", "EVENTS/S"};

static const char *str_or_dash(json_t *o, const char *key) {
        const char *s = json_string_value(json_object_get(o, key));
        return s && s[0] ? s : "-";
}

typedef char Row[NCOLS][128];

static void fill_row(json_t *p, Row cells) {
        snprintf(cells[COL_NAME], 128, "%s", str_or_dash(p, "name"));
        /* ha = on: who runs the pipeline, from the lease as the instance last read it */
        const char *holder = json_string_value(json_object_get(p, "lease_holder"));
        if (holder && holder[0] && json_is_true(json_object_get(p, "leader")))
                snprintf(cells[COL_STATE], 128, "%s, leader", str_or_dash(p, "state"));
        else if (holder && holder[0])
                snprintf(cells[COL_STATE], 128, "%s, %.80s leads", str_or_dash(p, "state"), holder);
        else
                snprintf(cells[COL_STATE], 128, "%s", str_or_dash(p, "state"));
        snprintf(cells[COL_SRC], 128, "%s", str_or_dash(p, "source_position"));
        snprintf(cells[COL_APP], 128, "%s", str_or_dash(p, "applied_position"));
        format_lag(json_number_value(json_object_get(p, "lag_seconds")),
                   json_integer_value(json_object_get(p, "lag_bytes")), cells[COL_LAG], 128);
        snprintf(cells[COL_RATE], 128, "%.1f", json_number_value(json_object_get(p, "events_per_second")));
}

/* The initial copy's tables not done yet (#14), one line each under the table. */
static void print_snapshots(json_t *arr, FILE *out) {
        size_t n = json_array_size(arr);
        for (size_t i = 0; i < n; i++) {
                json_t *p = json_array_get(arr, i), *snap = json_object_get(p, "snapshot");
                for (size_t t = 0; t < json_array_size(snap); t++) {
                        json_t *e = json_array_get(snap, t);
                        json_int_t done = json_integer_value(json_object_get(e, "chunks_done"));
                        json_int_t total = json_integer_value(json_object_get(e, "chunks_total"));
                        if (done >= total)
                                continue;
                        json_t *eta = json_object_get(e, "eta_seconds");
                        char etas[32] = "-";
                        if (json_is_number(eta))
                                snprintf(etas, sizeof(etas), "%.0f s", json_number_value(eta));
                        fprintf(out,
                                "%s snapshot %s: %" JSON_INTEGER_FORMAT " of ~%" JSON_INTEGER_FORMAT
                                " rows, %" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT
                                " chunks, %.0f rows/s, ETA %s\n",
                                str_or_dash(p, "name"), str_or_dash(e, "table"),
                                json_integer_value(json_object_get(e, "rows_copied")),
                                json_integer_value(json_object_get(e, "rows_estimated")), done, total,
                                json_number_value(json_object_get(e, "rows_per_second")), etas);
                }
        }
}

/* Two passes over the rows (widths, then lines) rather than a table of cells: an answer of 8 MiB
 * of "{}," would have asked for 2 GiB of them. */
static int print_table(json_t *root, FILE *out) {
        json_t *arr = json_object_get(root, "pipelines");
        if (!json_is_array(arr))
                return -EBADMSG;
        size_t n = json_array_size(arr);
        Row cells;
        size_t width[NCOLS];
        for (int c = 0; c < NCOLS; c++)
                width[c] = strlen(headers[c]);
        for (size_t i = 0; i < n; i++) {
                fill_row(json_array_get(arr, i), cells);
                for (int c = 0; c < NCOLS; c++)
                        if (strlen(cells[c]) > width[c])
                                width[c] = strlen(cells[c]);
        }
        for (int c = 0; c < NCOLS; c++)
                fprintf(out, "%-*s  ", (int)width[c], headers[c]);
        fputs("LAST_ERROR\n", out);
        for (size_t i = 0; i < n; i++) {
                fill_row(json_array_get(arr, i), cells);
                for (int c = 0; c < NCOLS; c++)
                        fprintf(out, "%-*s  ", (int)width[c], cells[c]);
                json_t *e = json_object_get(json_array_get(arr, i), "last_error");
                const char *msg = json_string_value(json_object_get(e, "message"));
                const char *when = json_string_value(json_object_get(e, "time"));
                if (!msg) {
                        fputs("-\n", out);
                        continue;
                }
                fprintf(out, "%s ", when ? when : "-");
                /* The table is one line per pipeline, whatever the message holds. */
                for (const char *c = msg; *c; c++)
                        fputc(*c == '\n' || *c == '\r' || *c == '\t' ? ' ' : *c, out);
                fputc('\n', out);
        }
        if (n == 0)
                fputs("(no pipelines configured)\n", out);
        print_snapshots(arr, out);
        return 0;
}

int status_print_answer(const char *answer, size_t answer_len, const char *listen_addr, bool json, FILE *out,
                        FILE *err) {
        int r;
        json_t *root = NULL;
        int code = 0;
        const char *body = strstr(answer, "\r\n\r\n");
        if (strncmp(answer, "HTTP/1.", 7) != 0 || answer_len < 12 || !body) {
                fprintf(err,
                        "%s answered something that is not HTTP (is metrics TLS on? cdcsync status "
                        "speaks plain HTTP)\n",
                        listen_addr);
                r = -EPROTO;
                goto out;
        }
        body += 4;
        for (int i = 9; i < 12; i++) {
                if (answer[i] < '0' || answer[i] > '9') {
                        r = -EPROTO;
                        fprintf(err, "%s answered a malformed HTTP status line\n", listen_addr);
                        goto out;
                }
                code = code * 10 + (answer[i] - '0');
        }
        if (code == 401) {
                fprintf(err,
                        "%s asks for a password (metrics basic auth) and did not take what cdcsync status sent "
                        "(metrics_user and metrics_password_file of the conf, when set): check them, or use "
                        "curl -u USER %s/status\n",
                        listen_addr, listen_addr);
                r = -EACCES;
                goto out;
        }
        if (code != 200) {
                fprintf(err, "%s answered HTTP %d to GET /status: is this cdcsync's metrics_listen?\n", listen_addr,
                        code);
                r = -EPROTO;
                goto out;
        }
        json_error_t jerr;
        root = json_loads(body, 0, &jerr);
        if (!root || !json_is_array(json_object_get(root, "pipelines"))) {
                fprintf(err, "%s answered /status with something that is not cdcsync's status JSON\n", listen_addr);
                r = -EBADMSG;
                goto out;
        }
        if (json) {
                fputs(body, out);
                if (body[0] && body[strlen(body) - 1] != '\n')
                        fputc('\n', out);
                r = 0;
        } else
                r = print_table(root, out);
out:
        json_decref(root);
        return r;
}

static int basic_auth_header(const char *user, const char *password, char *buf, size_t len);

int status_print(const char *listen_addr, bool json, FILE *out, FILE *err) {
        return status_print_auth(listen_addr, NULL, NULL, json, out, err);
}

int status_print_auth(const char *listen_addr, const char *user, const char *password, bool json, FILE *out,
                      FILE *err) {
        int r;
        int fd = -1;
        char *answer = NULL, auth[1024] = "";
        size_t answer_len = 0;
        struct sockaddr_storage addr;
        socklen_t addr_len;

        if (!listen_addr) {
                fprintf(err, "metrics_listen is off in the conf: cdcsync status asks the service through it; "
                             "set metrics_listen = 127.0.0.1:9780 and reload\n");
                return -EINVAL;
        }
        r = metrics_parse_listen(listen_addr, &addr, &addr_len);
        if (r < 0) {
                fprintf(err, "metrics_listen '%s' is not HOST:PORT (IPv4, or [IPv6]): fix it in the conf\n",
                        listen_addr);
                return r;
        }
        r = connect_to(&addr, addr_len, &fd);
        if (r == -ECONNREFUSED) {
                fprintf(err,
                        "cdcsync is not running (nothing answers on %s \u2014 start it with systemctl start "
                        "cdcsync)\n",
                        listen_addr);
                return r;
        }
        if (r < 0) {
                fprintf(err, "cannot reach cdcsync on %s: %s\n", listen_addr, strerror(-r));
                return r;
        }
        if (user && password && basic_auth_header(user, password, auth, sizeof(auth)) < 0) {
                fprintf(err, "the metrics user name and password are too long\n");
                r = -EINVAL;
                goto out;
        }
        r = http_request(fd, "GET", listen_addr, "/status", auth, NULL, &answer, &answer_len);
        if (r < 0) {
                fprintf(err, "reading the status from %s failed: %s\n", listen_addr, strerror(-r));
                goto out;
        }
        r = status_print_answer(answer, answer_len, listen_addr, json, out, err);
out:
        explicit_bzero(auth, sizeof(auth));
        free(answer);
        if (fd >= 0)
                close(fd);
        return r;
}

/* "Authorization: Basic base64(user:password)\r\n" into buf (wiped by the caller). */
static int basic_auth_header(const char *user, const char *password, char *buf, size_t len) {
        char plain[512];
        unsigned char enc[700];
        int n = snprintf(plain, sizeof(plain), "%s:%s", user, password);
        if (n < 0 || (size_t)n >= sizeof(plain)) {
                explicit_bzero(plain, sizeof(plain));
                return -E2BIG;
        }
        int e = EVP_EncodeBlock(enc, (const unsigned char *)plain, n);
        explicit_bzero(plain, sizeof(plain));
        n = e < 0 ? -1 : snprintf(buf, len, "Authorization: Basic %s\r\n", (const char *)enc);
        explicit_bzero(enc, sizeof(enc));
        return n < 0 || (size_t)n >= len ? -E2BIG : 0;
}

int status_action_answer(const char *answer, size_t answer_len, const char *listen_addr, const char *pipeline,
                         const char *action, FILE *out, FILE *err) {
        int code = 0;
        const char *body = strstr(answer, "\r\n\r\n");
        if (strncmp(answer, "HTTP/1.", 7) != 0 || answer_len < 12 || !body) {
                fprintf(err,
                        "%s answered something that is not HTTP (is metrics TLS on? cdcsync %s speaks plain HTTP)\n",
                        listen_addr, action);
                return -EPROTO;
        }
        for (int i = 9; i < 12; i++) {
                if (answer[i] < '0' || answer[i] > '9') {
                        fprintf(err, "%s answered a malformed HTTP status line\n", listen_addr);
                        return -EPROTO;
                }
                code = code * 10 + (answer[i] - '0');
        }
        json_error_t jerr;
        json_t *root = json_loads(body + 4, 0, &jerr);
        const char *msg = json_string_value(json_object_get(root, code / 100 == 2 ? "message" : "error"));
        char text[1024];
        /* The answer is the peer's word: printed on one line, control bytes replaced. */
        snprintf(text, sizeof(text), "%s", msg ? msg : "");
        for (char *c = text; *c; c++)
                if ((unsigned char)*c < 0x20)
                        *c = ' ';
        json_decref(root);
        int r = 0;
        if (code / 100 == 2)
                fprintf(out, "pipeline %s: %s\n", pipeline, text[0] ? text : "done");
        else if (code == 404 && !text[0])
                fprintf(err, "%s has no admin API (answered 404): is this cdcsync %s or later?\n", listen_addr,
                        CDCSYNC_VERSION);
        else if (code == 404)
                fprintf(err, "no pipeline %s in the running service (%s)\n", pipeline, text);
        else if (code == 401)
                fprintf(err,
                        "%s refused the credentials (%s): check admin_user and admin_password_file in the conf the "
                        "service runs with\n",
                        listen_addr, text);
        else
                fprintf(err, "%s answered HTTP %d: %s\n", listen_addr, code, text[0] ? text : "(no message)");
        if (code / 100 != 2)
                r = code == 404 ? -ENOENT : code == 401 || code == 403 ? -EACCES : -EPROTO;
        return r;
}

int status_action(const char *listen_addr, const char *user, const char *password, const char *pipeline,
                  const char *action, FILE *out, FILE *err) {
        return status_action_tables(listen_addr, user, password, pipeline, action, NULL, -1, out, err);
}

int status_action_tables(const char *listen_addr, const char *user, const char *password, const char *pipeline,
                         const char *action, char *const *tables, int ntables, FILE *out, FILE *err) {
        int r;
        int fd = -1;
        char *answer = NULL, *body = NULL, path[512], auth[1024] = "";
        size_t answer_len = 0;
        struct sockaddr_storage addr;
        socklen_t addr_len;

        if (!listen_addr) {
                fprintf(err,
                        "metrics_listen is off in the conf: cdcsync %s asks the service through it; set "
                        "metrics_listen = 127.0.0.1:9780 and restart cdcsync\n",
                        action);
                return -EINVAL;
        }
        r = metrics_parse_listen(listen_addr, &addr, &addr_len);
        if (r < 0) {
                fprintf(err, "metrics_listen '%s' is not HOST:PORT (IPv4, or [IPv6]): fix it in the conf\n",
                        listen_addr);
                return r;
        }
        /* A pipeline name is [A-Za-z0-9_.-] (conf.c): nothing to escape in a path, but check. */
        for (const char *c = pipeline; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
                      *c == '-' || *c == '.')) {
                        fprintf(err, "'%s' is not a pipeline name\n", pipeline);
                        return -EINVAL;
                }
        int n = snprintf(path, sizeof(path), "/api/pipelines/%s/%s", pipeline, action);
        if (n < 0 || (size_t)n >= sizeof(path)) {
                fprintf(err, "the pipeline name is too long\n");
                return -EINVAL;
        }
        if (user && password && basic_auth_header(user, password, auth, sizeof(auth)) < 0) {
                fprintf(err, "the admin user name and password are too long\n");
                return -EINVAL;
        }
        if (ntables >= 0) {
                json_t *list = json_array(), *o = list ? json_pack("{s:o}", "tables", list) : NULL;
                for (int i = 0; o && i < ntables; i++)
                        if (json_array_append_new(list, json_string(tables[i])) < 0) {
                                json_decref(o);
                                o = NULL;
                        }
                body = o ? json_dumps(o, JSON_COMPACT) : NULL;
                json_decref(o);
                if (!body) {
                        fprintf(err, "out of memory (or a table name that is not UTF-8)\n");
                        return -ENOMEM;
                }
        }
        r = connect_to(&addr, addr_len, &fd);
        if (r == -ECONNREFUSED) {
                fprintf(err,
                        "cdcsync is not running (nothing answers on %s \u2014 start it with systemctl start "
                        "cdcsync)\n",
                        listen_addr);
                goto out;
        }
        if (r < 0) {
                fprintf(err, "cannot reach cdcsync on %s: %s\n", listen_addr, strerror(-r));
                goto out;
        }
        r = http_request(fd, "POST", listen_addr, path, auth, body, &answer, &answer_len);
        if (r < 0) {
                fprintf(err, "asking %s to %s %s failed: %s\n", listen_addr, action, pipeline, strerror(-r));
                goto out;
        }
        r = status_action_answer(answer, answer_len, listen_addr, pipeline, action, out, err);
out:
        explicit_bzero(auth, sizeof(auth));
        free(answer);
        free(body);
        if (fd >= 0)
                close(fd);
        return r;
}
