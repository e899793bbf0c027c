/* Private to the metrics module: the endpoint's state (metrics.c: the HTTP server, its clients
 * and the attached pipelines) as the renderers (metrics_render.c) read it. */
#pragma once

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cdcsync/metrics.h"

/* events_per_second: the sampler keeps the last RATE_SAMPLES readings of each pipeline's event
 * total; the rate is (total now - oldest reading) / (time since it), i.e. over the last
 * RATE_SAMPLES rate intervals (10 s by default), including events up to the request itself. */
#define RATE_SAMPLES 10
#define TLS_FILE_MAX (1024 * 1024) /* a PEM cert chain or key is far smaller */
/* Slow clients (a byte every few seconds, or a response read as slowly) must not keep the
 * endpoint from a monitoring system: every connection gets REQUEST_TIMEOUT_S to send its whole
 * request and ANSWER_TIMEOUT_S to read the answer, then it is closed; one address may keep at most
 * WAITING_PER_ADDRESS connections waiting for their request and all together WAITING_MAX, a newer
 * one closing the oldest, so a scraper's connection always gets in; the rest of CONNECTION_LIMIT
 * stays for connections whose request arrived. No address holds more than PER_ADDRESS_LIMIT. */
#define CONNECTION_LIMIT 128
#define PER_ADDRESS_LIMIT 64
#define WAITING_MAX 96
#define WAITING_PER_ADDRESS 16
#define REQUEST_TIMEOUT_S 5
#define ANSWER_TIMEOUT_S 30
#define CONNECTION_TIMEOUT_S 10 /* idle */
#define REAP_INTERVAL_MS 500

/* One connection, from libmicrohttpd's notification that it started to the one that it closed
 * (which comes before the socket is closed: fd is valid while used is set). */
typedef struct {
        bool used;
        bool waiting;  /* its request has not arrived whole yet */
        int fd;        /* libmicrohttpd's socket: only shut down here, never closed */
        int64_t since; /* usec, CLOCK_MONOTONIC: when it started waiting, or its request arrived */
        struct sockaddr_storage addr;
} Conn;

/* The console's lag chart: one lag_seconds point per lag interval (10 s), the last hour. */
#define LAG_POINTS 360

typedef struct {
        PipelineStats *s;      /* not owned */
        float lag[LAG_POINTS]; /* seconds, ring */
        int nlag, lag_next;
        int64_t lag_at;                /* usec, CLOCK_MONOTONIC: when the last point was taken */
        int64_t t[RATE_SAMPLES];       /* usec, CLOCK_MONOTONIC */
        uint64_t events[RATE_SAMPLES]; /* events total at t[] */
        int nsamples;
        int next; /* ring slot the next sample goes to */
} Entry;

struct Metrics {
        struct MHD_Daemon *daemon;
        uint16_t port;
        char *user;     /* owned, NULL: no auth */
        char *password; /* owned, wiped on free */
        char *tls_cert; /* owned, PEM contents */
        char *tls_key;  /* owned, PEM contents, wiped on free */
        unsigned interval_ms;
        unsigned lag_interval_ms;
        char *admin_user;     /* owned, NULL: mutations use user/password */
        char *admin_password; /* owned, wiped on free */
        char *conflicts_path; /* owned: state_dir/conflicts.jsonl, NULL: none */
        MetricsActionFn action;
        void *action_userdata;

        pthread_mutex_t lock; /* guards entries, nentries, stopping */
        pthread_cond_t wake;  /* the sampler sleeps on it; signalled to stop */
        Entry *entries;
        size_t nentries, cap;
        bool stopping;
        bool sampler_started;
        pthread_t sampler;

        pthread_mutex_t conn_lock; /* guards conns, reaper_stopping */
        pthread_cond_t conn_wake;  /* the reaper sleeps on it; signalled to stop */
        Conn conns[CONNECTION_LIMIT];
        bool reaper_stopping;
        bool reaper_started;
        pthread_t reaper;
        unsigned closed_slow;  /* connections closed since the last log line about them */
        int64_t closed_logged; /* usec, CLOCK_MONOTONIC */
};

/* CLOCK_MONOTONIC in usec. */
int64_t metrics_mono_usec(void);
/* Records the pipeline's event total now (one rate sample), and a lag point when one is due
 * (lag_interval_ms; always the first). Called with m->lock held. */
void metrics_entry_sample(Metrics *m, Entry *e, int64_t now);
/* The sampler thread (see metrics.c's DESIGN): arg is the Metrics. */
void *metrics_sampler_main(void *arg);
