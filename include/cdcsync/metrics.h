/* The HTTP operations endpoint: GET /metrics (Prometheus), /status (JSON), /healthz. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cdcsync/stats.h"

typedef struct Metrics Metrics;

typedef struct {
        const char *listen;        /* "127.0.0.1:9780" or "[::1]:9780"; port 0 picks a free port */
        const char *auth_user;     /* basic auth when both user and password are set; NULL: none */
        const char *auth_password; /* never logged */
        const char *tls_cert_file; /* PEM; TLS when both cert and key are set */
        const char *tls_key_file;  /* PEM, unencrypted */
        unsigned rate_interval_ms; /* events/s sampling period; 0: 1000 ms (window: 10 samples) */
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
/* *ret_ok = every pipeline streaming. */
char *metrics_render_health(Metrics *m, bool *ret_ok);
