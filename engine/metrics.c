/* The HTTP operations endpoint (libmicrohttpd): Prometheus /metrics, JSON /status, /healthz.
 *
 * DESIGN: threads. libmicrohttpd runs its own polling thread, which calls handle_request() and
 * renders the answers. A sampler thread owned by this module records each attached pipeline's
 * event counter once per rate interval, for events_per_second. Both read the attached list under
 * m->lock; the pipeline threads never take that lock (they only write atomics in PipelineStats),
 * and metrics_detach() takes it, so once detach returned no thread of ours reads the stats.
 * A reaper thread closes connections of slow clients (see Conn); it and libmicrohttpd's thread
 * share m->conns under m->conn_lock, never taken together with m->lock. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cdcsync/admin.h"
#include "cdcsync/log.h"
#include "cdcsync/metrics.h"
#include "cdcsync/now.h"
#include "metrics_int.h"

/* The web console (engine/console.html, compiled in by cmake/embed.cmake). */
extern const char console_html[];

int metrics_parse_listen(const char *text, struct sockaddr_storage *ret, socklen_t *ret_len) {
        char host[INET6_ADDRSTRLEN + 1];
        const char *port_text;
        bool v6 = false;

        if (!text)
                return -EINVAL;
        if (text[0] == '[') {
                const char *end = strchr(text, ']');
                if (!end || end[1] != ':' || (size_t)(end - text - 1) >= sizeof(host))
                        return -EINVAL;
                memcpy(host, text + 1, end - text - 1);
                host[end - text - 1] = '\0';
                port_text = end + 2;
                v6 = true;
        } else {
                const char *colon = strrchr(text, ':');
                if (!colon || strchr(text, ':') != colon || (size_t)(colon - text) >= sizeof(host))
                        return -EINVAL;
                memcpy(host, text, colon - text);
                host[colon - text] = '\0';
                port_text = colon + 1;
        }
        if (port_text[0] < '0' || port_text[0] > '9')
                return -EINVAL;
        char *endp;
        errno = 0;
        unsigned long port = strtoul(port_text, &endp, 10);
        if (errno != 0 || *endp != '\0' || port > 65535)
                return -EINVAL;

        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        socklen_t len;
        if (v6) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
                a->sin6_family = AF_INET6;
                a->sin6_port = htons((uint16_t)port);
                if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
                        return -EINVAL;
                len = sizeof(*a);
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *)&ss;
                a->sin_family = AF_INET;
                a->sin_port = htons((uint16_t)port);
                /* "localhost" is what people type; it means the IPv4 loopback here, not a lookup. */
                const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
                if (inet_pton(AF_INET, h, &a->sin_addr) != 1)
                        return -EINVAL;
                len = sizeof(*a);
        }
        *ret = ss;
        *ret_len = len;
        return 0;
}

/* Reads a whole small file (TLS PEM) into a NUL-terminated buffer. */
static int read_small_file(const char *path, char **ret) {
        int r;
        char *buf = NULL;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto out;
        }
        if (!S_ISREG(st.st_mode) || st.st_size > TLS_FILE_MAX) {
                r = -EFBIG;
                goto out;
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        size_t got = 0;
        while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        goto out;
                }
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        buf[got] = '\0';
        *ret = buf;
        buf = NULL;
        r = 0;
out:
        free(buf);
        close(fd);
        return r;
}

static void wipe_free(char *p) {
        if (!p)
                return;
        explicit_bzero(p, strlen(p));
        free(p);
}

static enum MHD_Result reply_allow(struct MHD_Connection *conn, unsigned status, const char *type, char *body,
                                   bool owned, bool auth_fail, const char *allow) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(
                strlen(body), body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                if (owned)
                        free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow ? allow : "GET, HEAD");
        enum MHD_Result r = auth_fail ? MHD_queue_basic_auth_fail_response(conn, "cdcsync", resp)
                                      : MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type, char *body, bool owned,
                             bool auth_fail) {
        return reply_allow(conn, status, type, body, owned, auth_fail, NULL);
}

/* Who may make this request (admin.h's admin_auth) by the basic auth credentials it carries. */
static AdminAuth authorize(Metrics *m, struct MHD_Connection *conn, bool mutation) {
        char *pass = NULL;
        char *user = MHD_basic_auth_get_username_password(conn, &pass);
        AdminCreds admin = {m->admin_user, m->admin_password}, metrics = {m->user, m->password};
        AdminAuth a = admin_auth(&admin, &metrics, user, pass, mutation);
        if (pass) {
                explicit_bzero(pass, strlen(pass));
                MHD_free(pass);
        }
        if (user)
                MHD_free(user);
        return a;
}

/* ---- slow clients ---- */

static bool same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
        if (a->ss_family != b->ss_family)
                return false;
        if (a->ss_family == AF_INET)
                return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
                       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
        if (a->ss_family == AF_INET6)
                return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                              &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
        return true;
}

/* Called with m->conn_lock held. libmicrohttpd sees the end of the stream and closes it. */
static void conn_close(Metrics *m, Conn *c) {
        shutdown(c->fd, SHUT_RDWR);
        c->waiting = false;
        c->since = INT64_MAX; /* not again */
        m->closed_slow++;
}

/* Called with m->conn_lock held: the oldest waiting connection (of address a, when given)
 * other than except, or NULL; *ret_n: how many such wait. */
static Conn *oldest_waiting(Metrics *m, const struct sockaddr_storage *a, const Conn *except, unsigned *ret_n) {
        Conn *oldest = NULL;
        unsigned n = 0;
        for (size_t i = 0; i < CONNECTION_LIMIT; i++) {
                Conn *c = &m->conns[i];
                if (!c->used || !c->waiting || c == except || (a && !same_address(&c->addr, a)))
                        continue;
                n++;
                if (!oldest || c->since < oldest->since)
                        oldest = c;
        }
        *ret_n = n;
        return oldest;
}

static void notify_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe) {
        Metrics *m = cls;
        pthread_mutex_lock(&m->conn_lock);
        if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
                Conn *c = *socket_context;
                if (c)
                        c->used = false;
                *socket_context = NULL;
                goto out;
        }
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ad = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        Conn *c = NULL;
        for (size_t i = 0; i < CONNECTION_LIMIT && !c; i++)
                if (!m->conns[i].used)
                        c = &m->conns[i];
        if (!c || !fd || !ad || !ad->client_addr)
                goto out; /* cannot be (libmicrohttpd admits at most CONNECTION_LIMIT): not tracked */
        *c = (Conn){.used = true, .waiting = true, .fd = fd->connect_fd, .since = metrics_mono_usec()};
        size_t alen = ad->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
        memcpy(&c->addr, ad->client_addr, alen);
        *socket_context = c;
        /* Room for the newcomer: the oldest waiting of its address, else the oldest of all. */
        unsigned n;
        Conn *old = oldest_waiting(m, &c->addr, c, &n);
        if (n >= WAITING_PER_ADDRESS)
                conn_close(m, old);
        else if ((old = oldest_waiting(m, NULL, c, &n)) && n >= WAITING_MAX)
                conn_close(m, old);
out:
        pthread_mutex_unlock(&m->conn_lock);
}

/* whole: the request arrived (true), or the answer was sent and a next request may come. */
static void conn_mark(Metrics *m, struct MHD_Connection *connection, bool whole) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        pthread_mutex_lock(&m->conn_lock);
        Conn *c = ci ? ci->socket_context : NULL;
        if (c && c->used && c->since != INT64_MAX) {
                c->waiting = !whole;
                c->since = metrics_mono_usec();
        }
        pthread_mutex_unlock(&m->conn_lock);
}

/* A POST's body as it arrives (handle_request), at most ADMIN_BODY_MAX bytes. */
typedef struct {
        size_t len;
        bool too_big;
        char *data; /* owned, NUL-terminated */
} Upload;

static void request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                              enum MHD_RequestTerminationCode toe) {
        (void)toe;
        Upload *up = *con_cls;
        if (up) {
                free(up->data);
                free(up);
                *con_cls = NULL;
        }
        conn_mark(cls, connection, false);
}

static void *reaper_main(void *arg) {
        Metrics *m = arg;
        pthread_mutex_lock(&m->conn_lock);
        while (!m->reaper_stopping) {
                struct timespec until = now_after_ms(CLOCK_MONOTONIC, REAP_INTERVAL_MS);
                int r = 0;
                while (!m->reaper_stopping && r != ETIMEDOUT)
                        r = pthread_cond_timedwait(&m->conn_wake, &m->conn_lock, &until);
                int64_t now = metrics_mono_usec();
                for (size_t i = 0; i < CONNECTION_LIMIT; i++) {
                        Conn *c = &m->conns[i];
                        int64_t limit = (c->waiting ? REQUEST_TIMEOUT_S : ANSWER_TIMEOUT_S) * INT64_C(1000000);
                        if (c->used && c->since != INT64_MAX && now - c->since >= limit)
                                conn_close(m, c);
                }
                /* Said at most once a minute: a client trickling bytes must not flood the log. */
                if (m->closed_slow && now - m->closed_logged >= 60 * INT64_C(1000000)) {
                        log_warn("[metrics]",
                                 "closed %u connection(s) of slow clients (a request takes at most %d s to arrive, "
                                 "an answer %d s to be read; one address keeps at most %d waiting)",
                                 m->closed_slow, REQUEST_TIMEOUT_S, ANSWER_TIMEOUT_S, WAITING_PER_ADDRESS);
                        m->closed_slow = 0;
                        m->closed_logged = now;
                }
        }
        pthread_mutex_unlock(&m->conn_lock);
        return NULL;
}

static const char TEXT[] = "text/plain; charset=utf-8";

static const char JSON[] = "application/json";

/* An answer of the admin API: {"error": "..."} or what the caller built. */
static enum MHD_Result reply_json(struct MHD_Connection *conn, unsigned status, json_t *o, bool auth_fail,
                                  const char *allow) {
        char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!body)
                return MHD_NO;
        return reply_allow(conn, status, JSON, body, true, auth_fail, allow);
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *message, bool auth_fail,
                                   const char *allow) {
        return reply_json(conn, status, json_pack("{s:s}", "error", message), auth_fail, allow);
}

static const char NO_ADMIN[] =
        "no admin credentials are configured, so state-changing calls are refused: set admin_user and "
        "admin_password_file in [service] (or metrics_user and metrics_password_file), then restart cdcsync";

/* A refused request: 401 asks for credentials, except of the console, which asks the user itself
 * (a browser would put up its own dialog over it). */
static enum MHD_Result refuse(struct MHD_Connection *conn, AdminAuth a, bool mutation) {
        if (a == ADMIN_AUTH_UNCONFIGURED)
                return reply_error(conn, MHD_HTTP_FORBIDDEN, NO_ADMIN, false, NULL);
        bool console = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Cdcsync-Console") != NULL;
        const char *msg = mutation ? "authentication required: the admin user (admin_user and admin_password_file in "
                                     "[service], else metrics_user)"
                                   : "authentication required";
        return reply_error(conn, MHD_HTTP_UNAUTHORIZED, msg, !console, NULL);
}

static enum MHD_Result serve_conflicts(Metrics *m, struct MHD_Connection *conn) {
        const char *pipeline = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "pipeline");
        const char *limit_text = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit");
        int limit;
        if (admin_parse_limit(limit_text, &limit) < 0)
                return reply_error(conn, MHD_HTTP_BAD_REQUEST, "limit must be a whole number from 1 to 1000", false,
                                   NULL);
        if (pipeline && (!pipeline[0] || strlen(pipeline) >= ADMIN_NAME_MAX))
                return reply_error(conn, MHD_HTTP_BAD_REQUEST, "pipeline must name a pipeline", false, NULL);
        json_t *o = NULL;
        int r = m->conflicts_path ? admin_conflicts(m->conflicts_path, pipeline, limit, &o)
                                  : ((o = json_pack("{s:[], s:b}", "conflicts", "complete", true)) ? 0 : -ENOMEM);
        if (r < 0) {
                char msg[256];
                snprintf(msg, sizeof(msg), "cannot read the conflict log: %s", strerror(-r));
                return reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, msg, false, NULL);
        }
        return reply_json(conn, MHD_HTTP_OK, o, false, NULL);
}

static enum MHD_Result serve_action(Metrics *m, struct MHD_Connection *conn, const AdminRoute *rt, Upload *up) {
        json_t *body = NULL;
        if (up->len > 0) {
                json_error_t e;
                body = json_loadb(up->data, up->len, 0, &e);
                if (!json_is_object(body)) {
                        json_decref(body);
                        return reply_error(conn, MHD_HTTP_BAD_REQUEST, "the body must be a JSON object", false, NULL);
                }
        }
        char msg[512] = "";
        int r = m->action ? m->action(m->action_userdata, rt->pipeline, rt->action, body, msg, sizeof(msg)) : -EBUSY;
        json_decref(body);
        if (r == 0)
                return reply_json(
                        conn, MHD_HTTP_ACCEPTED,
                        json_pack("{s:s, s:s, s:s}", "pipeline", rt->pipeline, "action", rt->action, "message", msg),
                        false, NULL);
        unsigned status = r == -ENOENT     ? MHD_HTTP_NOT_FOUND
                          : r == -EBUSY    ? MHD_HTTP_SERVICE_UNAVAILABLE
                          : r == -EALREADY ? MHD_HTTP_CONFLICT
                          : r == -EINVAL   ? MHD_HTTP_BAD_REQUEST
                                           : MHD_HTTP_INTERNAL_SERVER_ERROR;
        if (!msg[0])
                snprintf(msg, sizeof(msg), "%s failed: %s", rt->action, strerror(-r));
        return reply_error(conn, status, msg, false, NULL);
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                      const char *version, const char *upload_data, size_t *upload_data_size,
                                      void **con_cls) {
        Metrics *m = cls;
        (void)version;
        AdminRoute rt;
        bool method_ok = false;
        int routed = admin_route(method, url, &rt, &method_ok);

        /* A POST to an action: its body comes in further calls (bounded), after the
         * credentials were checked on the first. */
        Upload *up = *con_cls;
        if (up) {
                if (*upload_data_size > 0) {
                        size_t n = *upload_data_size;
                        *upload_data_size = 0;
                        if (up->too_big || n > ADMIN_BODY_MAX - up->len) {
                                up->too_big = true;
                                return MHD_YES; /* drained; answered once it all arrived */
                        }
                        memcpy(up->data + up->len, upload_data, n);
                        up->len += n;
                        up->data[up->len] = '\0';
                        return MHD_YES;
                }
                if (up->too_big)
                        return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "the body is larger than 64 KiB", false,
                                           NULL);
                return serve_action(m, conn, &rt, up);
        }

        conn_mark(m, conn, true);
        bool mutation = routed == 1 && rt.mutation && method_ok; /* a wrong method is a 405 first */
        AdminAuth a = authorize(m, conn, mutation);
        if (a != ADMIN_AUTH_OK)
                return refuse(conn, a, mutation);
        if (routed < 0) {
                /* Said from the action table, so a new action is listed without another edit. */
                char msg[256];
                size_t n = (size_t)snprintf(msg, sizeof(msg),
                                            "not found: the admin API has GET /api/pipelines, GET /api/conflicts and "
                                            "POST /api/pipelines/NAME/");
                for (const char *const *act = admin_actions; *act && n < sizeof(msg); act++)
                        n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s%s", act == admin_actions ? "" : "|", *act);
                return reply_error(conn, MHD_HTTP_NOT_FOUND, msg, false, NULL);
        }
        if (routed == 1 && !method_ok)
                return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", false, rt.allow);
        if (mutation) {
                up = calloc(1, sizeof(*up));
                if (up)
                        up->data = malloc(ADMIN_BODY_MAX + 1);
                if (!up || !up->data) {
                        if (up)
                                free(up);
                        return MHD_NO;
                }
                up->data[0] = '\0';
                *con_cls = up;
                return MHD_YES;
        }
        if (routed == 1) {
                switch (rt.kind) {
                case ADMIN_ROUTE_CONSOLE:
                        return reply(conn, MHD_HTTP_OK, "text/html; charset=utf-8", (char *)console_html, false, false);
                case ADMIN_ROUTE_PIPELINES: {
                        char *body = metrics_render_pipelines(m);
                        if (!body)
                                return MHD_NO;
                        return reply(conn, MHD_HTTP_OK, JSON, body, true, false);
                }
                case ADMIN_ROUTE_CONFLICTS: return serve_conflicts(m, conn);
                case ADMIN_ROUTE_ACTION: break; /* a mutation: above */
                }
        }
        /* HEAD is GET without a body (libmicrohttpd drops it), which HTTP asks every server to allow. */
        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
                return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, TEXT, "method not allowed\n", false, false);

        if (strcmp(url, "/metrics") == 0) {
                char *body = metrics_render_prometheus(m);
                if (!body)
                        return MHD_NO;
                return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body, true, false);
        }
        if (strcmp(url, "/status") == 0) {
                char *body = metrics_render_status(m);
                if (!body)
                        return MHD_NO;
                return reply(conn, MHD_HTTP_OK, JSON, body, true, false);
        }
        if (strcmp(url, "/healthz") == 0) {
                bool ok = false;
                char *body = metrics_render_health(m, &ok);
                if (!body)
                        return MHD_NO;
                return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, TEXT, body, true, false);
        }
        return reply(conn, MHD_HTTP_NOT_FOUND, TEXT,
                     "not found: try /, /metrics, /status, /healthz or /api/pipelines\n", false, false);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
        (void)cls;
        char line[512];
        vsnprintf(line, sizeof(line), fmt, ap);
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
        log_warn("[metrics]", "%s", line);
}

static bool is_loopback(const struct sockaddr_storage *a) {
        if (a->ss_family == AF_INET)
                return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

/* Binds the listen socket ourselves: the exact address, CLOEXEC, an IPv6 socket that does not
 * also take IPv4, and a precise errno when the address is taken or not ours. */
static int listen_socket(const struct sockaddr_storage *addr, socklen_t len, int *ret_fd) {
        int r;
        int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        /* A restart must not fail on the previous process' TIME_WAIT connections. */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                goto fail;
        if (addr->ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
                goto fail;
        if (bind(fd, (const struct sockaddr *)addr, len) < 0)
                goto fail;
        if (listen(fd, 64) < 0)
                goto fail;
        *ret_fd = fd;
        return 0;
fail:
        r = -errno;
        close(fd);
        return r;
}

int metrics_start(const MetricsOptions *opts, Metrics **ret) {
        int r;
        int fd = -1;
        struct sockaddr_storage addr;
        socklen_t addr_len;

        if (!opts || (!opts->auth_user) != (!opts->auth_password) || (!opts->tls_cert_file) != (!opts->tls_key_file))
                return -EINVAL;
        r = metrics_parse_listen(opts->listen, &addr, &addr_len);
        if (r < 0)
                return r;

        Metrics *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        pthread_mutex_init(&m->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&m->wake, &ca);
        pthread_mutex_init(&m->conn_lock, NULL);
        pthread_cond_init(&m->conn_wake, &ca);
        pthread_condattr_destroy(&ca);
        m->closed_logged = metrics_mono_usec() - 60 * INT64_C(1000000);
        m->interval_ms = opts->rate_interval_ms ? opts->rate_interval_ms : 1000;
        m->lag_interval_ms = opts->lag_history_interval_ms ? opts->lag_history_interval_ms : 10000;
        m->action = opts->action;
        m->action_userdata = opts->action_userdata;
        if ((!opts->admin_user) != (!opts->admin_password)) {
                r = -EINVAL;
                goto fail;
        }
        if (opts->admin_user) {
                m->admin_user = strdup(opts->admin_user);
                m->admin_password = strdup(opts->admin_password);
                if (!m->admin_user || !m->admin_password) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        if (opts->state_dir && asprintf(&m->conflicts_path, "%s/conflicts.jsonl", opts->state_dir) < 0) {
                m->conflicts_path = NULL;
                r = -ENOMEM;
                goto fail;
        }

        if (opts->auth_user) {
                m->user = strdup(opts->auth_user);
                m->password = strdup(opts->auth_password);
                if (!m->user || !m->password) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        if (opts->tls_cert_file) {
                r = read_small_file(opts->tls_cert_file, &m->tls_cert);
                if (r < 0)
                        goto fail;
                r = read_small_file(opts->tls_key_file, &m->tls_key);
                if (r < 0)
                        goto fail;
        }

        r = listen_socket(&addr, addr_len, &fd);
        if (r < 0)
                goto fail;
        struct sockaddr_storage bound;
        socklen_t bound_len = sizeof(bound);
        if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) < 0) {
                r = -errno;
                goto fail;
        }
        m->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);

        unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
        if (addr.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        struct MHD_OptionItem tls_opts[] = {
                {MHD_OPTION_HTTPS_MEM_CERT, 0, m->tls_cert},
                {MHD_OPTION_HTTPS_MEM_KEY, 0, m->tls_key},
                {MHD_OPTION_END, 0, NULL},
        };
        if (m->tls_cert) {
                if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
                        log_error("[metrics]", "this libmicrohttpd was built without TLS support");
                        r = -EOPNOTSUPP;
                        goto fail;
                }
                flags |= MHD_USE_TLS;
        } else
                tls_opts[0].option = MHD_OPTION_END;

        /* The logger goes first: libmicrohttpd uses its own for anything said before it is set. */
        m->daemon = MHD_start_daemon(
                flags, m->port, NULL, NULL, handle_request, m, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
                MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_ADDRESS_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION, notify_connection, m,
                MHD_OPTION_NOTIFY_COMPLETED, request_completed, m, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
        /* From here the daemon owns the socket: it closes it when stopped, and libmicrohttpd
         * 0.9.75 also closes it when the start fails (checked with strace), so never again here. */
        fd = -1;
        if (!m->daemon) {
                /* The reason (a bad certificate, most likely) went to the log through mhd_log. */
                r = m->tls_cert ? -EINVAL : -EIO;
                goto fail;
        }

        r = -pthread_create(&m->sampler, NULL, metrics_sampler_main, m);
        if (r < 0)
                goto fail;
        m->sampler_started = true;
        r = -pthread_create(&m->reaper, NULL, reaper_main, m);
        if (r < 0)
                goto fail;
        m->reaper_started = true;

        /* Said once at start, where an operator reads it: both are legal, neither is wise. */
        if (!is_loopback(&addr) && !m->tls_cert)
                log_warn("[metrics]", "metrics_listen %s is not a loopback address and TLS is off: %s", opts->listen,
                         m->user ? "the basic auth password crosses the network in clear"
                                 : "anyone who reaches it reads pipeline names, positions and errors");
        *ret = m;
        return 0;
fail:
        if (fd >= 0)
                close(fd);
        metrics_free(m);
        return r;
}

uint16_t metrics_port(const Metrics *m) {
        return m->port;
}

Metrics *metrics_free(Metrics *m) {
        if (!m)
                return NULL;
        if (m->reaper_started) {
                pthread_mutex_lock(&m->conn_lock);
                m->reaper_stopping = true;
                pthread_cond_signal(&m->conn_wake);
                pthread_mutex_unlock(&m->conn_lock);
                pthread_join(m->reaper, NULL);
        }
        if (m->daemon)
                MHD_stop_daemon(m->daemon);
        if (m->sampler_started) {
                pthread_mutex_lock(&m->lock);
                m->stopping = true;
                pthread_cond_signal(&m->wake);
                pthread_mutex_unlock(&m->lock);
                pthread_join(m->sampler, NULL);
        }
        pthread_cond_destroy(&m->wake);
        pthread_mutex_destroy(&m->lock);
        pthread_cond_destroy(&m->conn_wake);
        pthread_mutex_destroy(&m->conn_lock);
        free(m->entries);
        free(m->user);
        wipe_free(m->password);
        free(m->admin_user);
        wipe_free(m->admin_password);
        free(m->conflicts_path);
        free(m->tls_cert);
        wipe_free(m->tls_key);
        free(m);
        return NULL;
}

int metrics_attach(Metrics *m, PipelineStats *s) {
        int r = 0;
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->nentries; i++)
                if (m->entries[i].s == s) {
                        r = -EEXIST;
                        goto out;
                }
        if (m->nentries == m->cap) {
                size_t cap = m->cap ? m->cap * 2 : 8;
                Entry *e = realloc(m->entries, cap * sizeof(*e));
                if (!e) {
                        r = -ENOMEM;
                        goto out;
                }
                m->entries = e;
                m->cap = cap;
        }
        Entry *e = &m->entries[m->nentries++];
        memset(e, 0, sizeof(*e));
        e->s = s;
        /* A first reading right away, so the first /status after attach already has a rate. */
        metrics_entry_sample(m, e, metrics_mono_usec());
out:
        pthread_mutex_unlock(&m->lock);
        return r;
}

int metrics_detach(Metrics *m, PipelineStats *s) {
        int r = -ENOENT;
        pthread_mutex_lock(&m->lock);
        for (size_t i = 0; i < m->nentries; i++)
                if (m->entries[i].s == s) {
                        /* Keep the order: /metrics and /status list pipelines as attached. */
                        memmove(&m->entries[i], &m->entries[i + 1], (m->nentries - i - 1) * sizeof(Entry));
                        m->nentries--;
                        r = 0;
                        break;
                }
        pthread_mutex_unlock(&m->lock);
        return r;
}
