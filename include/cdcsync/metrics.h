/* The HTTP operations endpoint: GET /metrics (Prometheus), /status (JSON), /healthz. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cdcsync/stats.h"

typedef struct Metrics Metrics;

/* Carries out POST /api/pipelines/NAME/ACTION (admin.h's admin_actions) on the service's
 * pipelines, called from the endpoint's thread: it must not wait long. body: the request's JSON
 * (NULL when it sent none), borrowed. Returns 0 (accepted: 202), -ENOENT (no such pipeline: 404),
 * -EBUSY (not now, try again: 503), -EALREADY (conflicts with the pipeline's state: 409), -EINVAL
 * (a bad body: 400), else 500; msg: what to tell the client, either way. */
typedef int (*MetricsActionFn)(void *userdata, const char *pipeline, const char *action, json_t *body, char *msg,
                               size_t msglen);

typedef struct {
        const char *listen;        /* "127.0.0.1:9780" or "[::1]:9780"; port 0 picks a free port */
        const char *auth_user;     /* basic auth when both user and password are set; NULL: none */
        const char *auth_password; /* never logged */
        const char *tls_cert_file; /* PEM; TLS when both cert and key are set */
        const char *tls_key_file;  /* PEM, unencrypted */
        unsigned rate_interval_ms; /* events/s sampling period; 0: 1000 ms (window: 10 samples) */
        /* The admin API (admin.h): credentials of its mutations (NULL: auth_user's; with neither,
         * mutations are refused), state_dir holding conflicts.jsonl (NULL: none), and what carries
         * the actions out (NULL: they answer 503). */
        const char *admin_user;
        const char *admin_password; /* never logged */
        const char *state_dir;
        MetricsActionFn action;
        void *action_userdata;
        unsigned lag_history_interval_ms; /* one lag point of the console's chart per interval; 0: 10 s */
} MetricsOptions;

/* Parses "host:port" (IPv4 literal, "localhost", or "[IPv6 literal]") into a socket address.
 * Returns 0, or -EINVAL when it is not of that form. */
int metrics_parse_listen(const char *text, struct sockaddr_storage *ret, socklen_t *ret_len);

/* Starts the endpoint (its own threads) on exactly opts->listen. Copies what it needs from opts.
 * Returns 0, -EINVAL (bad address or options), -ENOENT/-EACCES (TLS files), -EADDRINUSE, ... */
int metrics_start(const MetricsOptions *opts, Metrics **ret);
/* Stops the endpoint and waits for its threads. Accepts NULL, returns NULL. */
Metrics *metrics_free(Metrics *m);
/* The port actually bound (useful with port 0). */
uint16_t metrics_port(const Metrics *m);

/* Publishes a pipeline's stats; s stays owned by the caller and must stay valid until
 * metrics_detach(s) returned. Returns 0, -EEXIST, or -ENOMEM. */
int metrics_attach(Metrics *m, PipelineStats *s);
/* Withdraws s; once this returns no request reads s any more. Returns 0 or -ENOENT. */
int metrics_detach(Metrics *m, PipelineStats *s);

/* The bodies the endpoint serves, for the tests and for a caller without HTTP. Each returns a
 * malloc'ed NUL-terminated string (caller frees) or NULL on ENOMEM. */
char *metrics_render_prometheus(Metrics *m);
char *metrics_render_status(Metrics *m);
/* GET /api/pipelines: /status with each pipeline's lag history ("lag_history": {"interval_s",
 * "seconds": [oldest .. newest]}, the last hour at most). */
char *metrics_render_pipelines(Metrics *m);
/* *ret_ok = every pipeline streaming. */
char *metrics_render_health(Metrics *m, bool *ret_ok);
