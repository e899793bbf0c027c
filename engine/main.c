/* cdcsync's command line: run (the service), check, status, pause/resume/restart, resnapshot,
 * sync-sequences.
 *
 * DESIGN. The main thread owns the conf, the state store, the metrics endpoint and the list of
 * pipelines; each pipeline runs its own threads (see pipeline.c). The endpoint's thread carries
 * out the admin API's actions (admin_action) on the list under Service.lock, which the main
 * thread holds while it changes the list (reload, stop); an action that finds it taken answers
 * "try again" rather than hold up the endpoint. Signal handlers only set flags;
 * the main thread polls them every 200 ms and does the work: SIGTERM/SIGINT stop, SIGHUP reload.
 * The main thread is also the watchdog: it pings systemd only while every pipeline proves it is
 * alive (its threads advanced a progress stamp recently). */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cdcsync/conf.h"
#include "cdcsync/connector.h"
#include "cdcsync/log.h"
#include "cdcsync/metrics.h"
#include "cdcsync/notify.h"
#include "cdcsync/now.h"
#include "cdcsync/pipeline.h"
#include "cdcsync/seqsync.h"
#include "cdcsync/bidi.h"
#include "cdcsync/guard.h"
#include "cdcsync/state.h"
#include "cdcsync/status.h"

#define DEFAULT_CONF "/etc/cdcsync/cdcsync.conf"
#define ALIVE_LIMIT_USEC (20 * 1000000LL) /* a pipeline silent this long fails the watchdog */

/* A pipeline thread may wait for a peer up to its connectors' timeout_s before that wait fails:
 * silence that long is not a hang, and must not make systemd kill every other pipeline too. */
static int64_t alive_limit(const Pipeline *p) {
        const PipelineConf *c = pipeline_conf(p);
        int64_t t = conf_timeout_ms(c->source) > conf_timeout_ms(c->sink) ? conf_timeout_ms(c->source)
                                                                          : conf_timeout_ms(c->sink);
        t = t * 1000 + 10 * 1000000LL;
        return t > ALIVE_LIMIT_USEC ? t : ALIVE_LIMIT_USEC;
}

static volatile sig_atomic_t got_term, got_hup;

static void on_signal(int sig) {
        if (sig == SIGHUP)
                got_hup = 1;
        else
                got_term = 1;
}

static void usage(FILE *out) {
        fputs("usage: cdcsync [-c FILE] [run]        run the service in the foreground\n"
              "       cdcsync [-c FILE] check [--connect]  validate the conf (and connect to every connector)\n"
              "       cdcsync [-c FILE] status [--json]    ask the running service for its pipelines\n"
              "       cdcsync [-c FILE] pause|resume|restart PIPELINE  through the running service's admin API\n"
              "       cdcsync [-c FILE] resnapshot PIPELINE [TABLE...]  copy tables again while the pipeline streams\n"
              "       cdcsync [-c FILE] sync-sequences PIPELINE  carry sequence values source -> sink now "
              "(PostgreSQL)\n"
              "       cdcsync --version | --help\n"
              "FILE defaults to " DEFAULT_CONF ".\n",
              out);
}

/* ---- the running service ---- */

typedef struct {
        Conf **confs; /* every conf loaded: pipelines keep pointers into them until exit */
        size_t nconfs;
        Conf *conf; /* current */
        State *state;
        Metrics *metrics;
        Pipeline **pipes;
        int npipes;
        pthread_mutex_t lock; /* guards pipes and npipes against the admin API's thread */
} Service;

static int start_pipeline(Service *sv, const PipelineConf *pc, Pipeline **ret) {
        BidiPeers peers;
        bool paused = false;
        /* An operator's pause outlives restarts (state_set_paused); a store that cannot say is
         * taken as no pause: the pipeline's own use of the store reports what is wrong. */
        int r = state_get_paused(sv->state, pc->name, &paused);
        if (r < 0)
                log_warn(NULL, "pipeline %s: cannot read whether it was paused: %s; starting it", pc->name,
                         state_strerror(r));
        r = bidi_peers(sv->conf, pc, &peers);
        if (r == 0)
                r = pipeline_start_paused(pc, sv->state, sv->conf->state_dir, &peers, paused, ret);
        if (r < 0) {
                log_error(NULL, "pipeline %s: cannot start: %s", pc->name, strerror(-r));
                return r;
        }
        if (sv->metrics)
                metrics_attach(sv->metrics, pipeline_stats(*ret));
        return 0;
}

static void stop_pipeline(Service *sv, Pipeline *p) {
        if (sv->metrics)
                metrics_detach(sv->metrics, pipeline_stats(p));
        pipeline_free(p);
}

static int keep_conf(Service *sv, Conf *c) {
        Conf **n = realloc(sv->confs, (sv->nconfs + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        sv->confs = n;
        sv->confs[sv->nconfs++] = c;
        sv->conf = c;
        return 0;
}

/* conf_load for the service: its messages (file:line: what is wrong) become ERROR log lines, so
 * under journald they carry an error priority like every other line of the service. */
static int load_conf_logged(const char *path, Conf **ret) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return conf_load(path, stderr, ret);
        int r = conf_load(path, f, ret);
        if (fclose(f) != 0) {
                free(buf);
                return r;
        }
        for (char *line = buf; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = '\0';
                if (*line)
                        log_error(NULL, "%s", line);
                line = nl ? nl + 1 : NULL;
        }
        free(buf);
        for (int i = 0; r == 0 && i < (*ret)->nwarnings; i++)
                log_warn(NULL, "%s", (*ret)->warnings[i]);
        return r;
}

/* SIGHUP: a bad conf changes nothing; pipelines whose sections (or connectors) changed restart
 * from their checkpoints; the others keep streaming untouched. */
static void reload(Service *sv, const char *path) {
        Conf *nc = NULL;
        log_info(NULL, "reloading %s", path);
        int r = load_conf_logged(path, &nc);
        if (r < 0) {
                log_error(NULL, "reload: %s is not valid (errors above); the running configuration stays", path);
                return;
        }
        if (strcmp(nc->state_dir, sv->conf->state_dir) != 0 ||
            (nc->metrics_listen == NULL) != (sv->conf->metrics_listen == NULL) ||
            (nc->metrics_listen && strcmp(nc->metrics_listen, sv->conf->metrics_listen) != 0))
                log_warn(NULL, "reload: state_dir and metrics_listen take effect only after a restart");
        Pipeline **np = calloc((size_t)nc->npipelines + 1, sizeof(*np));
        if (!np || keep_conf(sv, nc) < 0) {
                free(np);
                conf_free(nc);
                log_error(NULL, "reload: out of memory; the running configuration stays");
                return;
        }
        log_set_level(nc->log_level);
        pthread_mutex_lock(&sv->lock);
        /* Stop what is gone or changed first: a changed pipeline must release its slot. */
        for (int i = 0; i < sv->npipes; i++) {
                const PipelineConf *old = pipeline_conf(sv->pipes[i]);
                int keep = -1;
                for (int j = 0; j < nc->npipelines; j++)
                        if (strcmp(nc->pipelines[j].name, old->name) == 0 && nc->pipelines[j].hash == old->hash)
                                keep = j;
                if (keep >= 0) {
                        np[keep] = sv->pipes[i];
                } else {
                        log_info(NULL, "reload: pipeline %s changed or removed: stopping it", old->name);
                        stop_pipeline(sv, sv->pipes[i]);
                }
        }
        for (int j = 0; j < nc->npipelines; j++)
                if (!np[j]) {
                        log_info(NULL, "reload: starting pipeline %s", nc->pipelines[j].name);
                        start_pipeline(sv, &nc->pipelines[j], &np[j]);
                }
        /* A reload is also when sequence values are carried (sync_sequences = yes): the kept
         * pipelines sync now, the restarted ones did at their stop and do at their start. */
        for (int j = 0; j < nc->npipelines; j++)
                if (np[j] && nc->pipelines[j].sync_sequences)
                        pipeline_sync_sequences(np[j]);
        /* Pipelines that failed to start leave holes: compact. */
        int n = 0;
        for (int j = 0; j < nc->npipelines; j++)
                if (np[j])
                        np[n++] = np[j];
        free(sv->pipes);
        sv->pipes = np;
        sv->npipes = n;
        pthread_mutex_unlock(&sv->lock);
}

/* The admin API's actions (MetricsActionFn), on the endpoint's thread. */
static int admin_action(void *userdata, const char *name, const char *action, json_t *body, char *msg, size_t len) {
        Service *sv = userdata;
        if (pthread_mutex_trylock(&sv->lock) != 0) {
                snprintf(msg, len, "the service is reloading or stopping: try again");
                return -EBUSY;
        }
        int r = -ENOENT;
        Pipeline *p = NULL;
        for (int i = 0; i < sv->npipes; i++)
                if (strcmp(pipeline_conf(sv->pipes[i])->name, name) == 0)
                        p = sv->pipes[i];
        if (!p) {
                snprintf(msg, len, "no pipeline %s", name);
                goto out;
        }
        if (strcmp(action, "pause") == 0 || strcmp(action, "resume") == 0) {
                bool pause = action[0] == 'p';
                /* Kept first: a pause the store did not take would not outlive a restart. */
                r = state_set_paused(sv->state, name, pause);
                if (r < 0) {
                        snprintf(msg, len, "cannot keep the %s in the state store: %s", action, state_strerror(r));
                        log_error(NULL, "pipeline %s: %s", name, msg);
                        goto out;
                }
                if (pause)
                        pipeline_pause(p);
                else
                        pipeline_resume(p);
                log_info(NULL, "pipeline %s: %s asked through the admin API", name, action);
                snprintf(msg, len,
                         pause ? "pausing: the open batch is committed, then the source is not read until resumed"
                               : "resuming");
        } else if (strcmp(action, "restart") == 0) {
                if (pipeline_paused(p)) {
                        snprintf(msg, len, "pipeline %s is paused: resume it", name);
                        r = -EALREADY;
                        goto out;
                }
                pipeline_restart(p);
                log_info(NULL, "pipeline %s: restart asked through the admin API", name);
                snprintf(msg, len, "restarting from the sink's checkpoint");
                r = 0;
        } else if (strcmp(action, "resnapshot") == 0) {
                r = pipeline_resnapshot_ask(p, body, msg, len);
        } else {
                snprintf(msg, len, "no action %s", action);
                r = -ENOENT;
        }
out:
        pthread_mutex_unlock(&sv->lock);
        return r;
}

static void summary(Service *sv, char *buf, size_t len) {
        int up = 0, failed = 0;
        for (int i = 0; i < sv->npipes; i++) {
                int st = atomic_load(&pipeline_stats(sv->pipes[i])->state);
                up += st == PIPELINE_STREAMING;
                failed += st == PIPELINE_FAILED;
        }
        snprintf(buf, len, "%d of %d pipelines streaming%s", up, sv->npipes,
                 failed ? ", some failed (see /status)" : "");
}

static int cmd_run(const char *path) {
        Service sv = {.lock = PTHREAD_MUTEX_INITIALIZER};
        Conf *conf = NULL;
        if (getenv("JOURNAL_STREAM"))
                log_set_journal(true);
        int r = load_conf_logged(path, &conf);
        if (r == -EINVAL)
                return 2;
        if (r < 0) {
                fprintf(stderr, "cdcsync: cannot read %s: %s — pass the conf file with -c FILE\n", path, strerror(-r));
                return 2;
        }
        if (keep_conf(&sv, conf) < 0)
                return 1;
        log_set_level(conf->log_level);

        if (mkdir(conf->state_dir, 0700) < 0 && errno != EEXIST) {
                log_error(NULL, "cannot create state_dir %s: %s", conf->state_dir, strerror(errno));
                return 1;
        }
        /* Opened when a pipeline first needs it: a store that cannot be opened stops only those. */
        r = state_new(conf->state_dir, &sv.state);
        if (r < 0) {
                log_error(NULL, "cannot open the state store in %s: %s", conf->state_dir, strerror(-r));
                return 1;
        }
        if (conf->metrics_listen) {
                MetricsOptions mo = {
                        .listen = conf->metrics_listen,
                        .auth_user = conf->metrics_user,
                        .auth_password = conf->metrics_password,
                        .tls_cert_file = conf->metrics_tls_cert,
                        .tls_key_file = conf->metrics_tls_key,
                        .admin_user = conf->admin_user,
                        .admin_password = conf->admin_password,
                        .state_dir = conf->state_dir,
                        .action = admin_action,
                        .action_userdata = &sv,
                };
                r = metrics_start(&mo, &sv.metrics);
                if (r < 0) {
                        log_error(NULL, "cannot serve metrics on %s: %s — change metrics_listen or set it to off",
                                  conf->metrics_listen, strerror(-r));
                        state_free(sv.state);
                        return 1;
                }
                log_info(NULL, "metrics on http%s://%s/metrics", conf->metrics_tls_cert ? "s" : "",
                         conf->metrics_listen);
        }

        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        sv.pipes = calloc((size_t)conf->npipelines + 1, sizeof(*sv.pipes));
        for (int i = 0; sv.pipes && i < conf->npipelines; i++)
                if (start_pipeline(&sv, &conf->pipelines[i], &sv.pipes[sv.npipes]) == 0)
                        sv.npipes++;
        log_info(NULL, "cdcsync %s started with %d pipelines", CDCSYNC_VERSION, sv.npipes);

        uint64_t wd_usec = 0;
        bool wd = notify_watchdog_enabled(&wd_usec);
        bool ready = false;
        int64_t last_wd = 0, last_status = 0;
        char line[256];
        while (!got_term) {
                struct timespec ts = {0, 200 * 1000000L};
                nanosleep(&ts, NULL);
                if (got_hup) {
                        got_hup = 0;
                        notify_status("reloading");
                        reload(&sv, path);
                }
                int64_t now = now_usec();
                bool settled = true, alive = true;
                for (int i = 0; i < sv.npipes; i++) {
                        settled &= pipeline_settled(sv.pipes[i]);
                        /* Only working threads must prove progress: a failed pipeline's
                         * supervisor has ended, a retrying one sleeps its backoff (up to 30 s)
                         * on purpose; neither is hung, and holding back the watchdog for them
                         * would make systemd kill the healthy pipelines with them. */
                        int st = atomic_load(&pipeline_stats(sv.pipes[i])->state);
                        if (st == PIPELINE_FAILED || st == PIPELINE_RETRYING || st == PIPELINE_STOPPED ||
                            st == PIPELINE_PAUSED || st == PIPELINE_STANDBY)
                                continue;
                        alive &= now - pipeline_alive_ts(sv.pipes[i]) < alive_limit(sv.pipes[i]);
                }
                if (!ready && settled) {
                        summary(&sv, line, sizeof(line));
                        notify_ready(line);
                        ready = true;
                        last_status = now;
                }
                if (ready && now - last_status > 5 * 1000000LL) {
                        summary(&sv, line, sizeof(line));
                        notify_status(line);
                        last_status = now;
                }
                if (wd && alive && now - last_wd >= (int64_t)wd_usec / 2) {
                        notify_watchdog();
                        last_wd = now;
                }
        }
        notify_stopping();
        log_info(NULL, "stopping: committing or rolling back in-flight batches");
        pthread_mutex_lock(&sv.lock);
        for (int i = 0; i < sv.npipes; i++)
                pipeline_stop(sv.pipes[i]);
        for (int i = 0; i < sv.npipes; i++)
                stop_pipeline(&sv, sv.pipes[i]);
        free(sv.pipes);
        sv.pipes = NULL;
        sv.npipes = 0;
        pthread_mutex_unlock(&sv.lock);
        metrics_free(sv.metrics);
        state_free(sv.state);
        for (size_t i = 0; i < sv.nconfs; i++)
                conf_free(sv.confs[i]);
        free(sv.confs);
        log_info(NULL, "stopped");
        return 0;
}

/* ---- check ---- */

typedef struct {
        ConnectorPlace place;
        char why[512];
        bool tried, known;
        char **tables; /* owned, ntables: a source's tables, when listed */
        int ntables;
        bool listed;
} ConnectorFacts;

typedef struct {
        const Conf *conf;
        bool *refused; /* per pipeline */
} Findings;

static void print_finding(void *userdata, const PipelineConf *p, const PipelineConf *other, bool error,
                          const char *message) {
        Findings *f = userdata;
        printf("%s%s\n", error ? "" : "warning: ", message);
        if (error)
                f->refused[p - f->conf->pipelines] = true;
        if (error && other)
                f->refused[other - f->conf->pipelines] = true;
}

/* check --connect, across pipelines: asks every connector's server where its data is and every
 * source which tables it has, then refuses what would destroy or loop (guard.h) and tables that
 * do not exist. Returns 1 when something is refused. */
static int check_places(const Conf *conf, bool *refused) {
        ConnectorFacts *facts = calloc((size_t)conf->nconnectors + 1, sizeof(*facts));
        GuardPlace *places = calloc((size_t)conf->nconnectors + 1, sizeof(*places));
        char ***all = calloc((size_t)conf->npipelines + 1, sizeof(*all));
        int *nall = calloc((size_t)conf->npipelines + 1, sizeof(*nall));
        int rc = 0;
        if (!facts || !places || !all || !nall) {
                fprintf(stderr, "cdcsync: out of memory\n");
                rc = 1;
                goto out;
        }
        for (int i = 0; i < conf->npipelines; i++) {
                const PipelineConf *p = &conf->pipelines[i];
                const ConnectorConf *ends[2] = {p->source, p->sink};
                for (int e = 0; e < 2; e++) {
                        const ConnectorConf *k = ends[e];
                        ConnectorFacts *f = &facts[k - conf->connectors];
                        const ConnectorType *t = connector_type(k->type);
                        CdcError err = {0};
                        if (!t)
                                continue;
                        /* Only a type that holds tables has a place to ask about (guard.h). */
                        if (!f->tried && t->holds_tables) {
                                f->tried = true;
                                if (t->source->locate(k, &f->place, &err) < 0) {
                                        printf("connector %s: cannot ask where its data is: %s\n", k->name,
                                               err.message);
                                        rc = 1;
                                } else {
                                        f->known = true;
                                        places[k - conf->connectors] = guard_place(&f->place, f->why, sizeof(f->why));
                                }
                        }
                        if (e == 0 && !f->listed) {
                                f->listed = true;
                                if (t->source->list_tables(k, &f->tables, &f->ntables, &err) < 0) {
                                        printf("connector %s: cannot list its tables: %s\n", k->name, err.message);
                                        f->tables = NULL;
                                        rc = 1;
                                }
                        }
                }
                const ConnectorFacts *sf = &facts[p->source - conf->connectors];
                if (!sf->tables)
                        continue;
                if (p->all_tables) {
                        all[i] = sf->tables;
                        nall[i] = sf->ntables;
                        continue;
                }
                char missing[700];
                int n = guard_missing_tables(p, sf->tables, sf->ntables, missing, sizeof(missing));
                if (n > 0) {
                        printf("pipeline %s: source %s has no table%s %s — create %s, or fix tables in [pipeline.%s]\n",
                               p->name, p->source->name, n > 1 ? "s" : "", missing, n > 1 ? "them" : "it", p->name);
                        refused[i] = true;
                        rc = 1;
                }
        }
        GuardWorld w = {.places = places, .all_tables = (char **const *)all, .nall_tables = nall};
        Findings fd = {conf, refused};
        int errors = guard_check(conf, &w, print_finding, &fd);
        if (errors != 0)
                rc = 1;
out:
        for (int i = 0; facts && i < conf->nconnectors; i++) {
                for (int j = 0; j < facts[i].ntables; j++)
                        free(facts[i].tables[j]);
                free(facts[i].tables);
        }
        free(facts);
        free(places);
        free(all);
        free(nall);
        return rc;
}

static int cmd_check(const char *path, bool do_connect) {
        Conf *conf = NULL;
        int r = conf_load(path, stderr, &conf);
        if (r == -EINVAL)
                return 2;
        if (r < 0) {
                fprintf(stderr, "cdcsync: cannot read %s: %s\n", path, strerror(-r));
                return 2;
        }
        printf("%s: ok (%d connectors, %d pipelines)\n", path, conf->nconnectors, conf->npipelines);
        for (int i = 0; i < conf->nwarnings; i++)
                printf("warning: %s\n", conf->warnings[i]);
        int rc = 0;
        /* First what needs every pipeline's servers; a pipeline refused there is not checked
         * further (a sink's check may create its checkpoint table, not in the wrong place). */
        bool *refused = calloc((size_t)conf->npipelines + 1, sizeof(*refused));
        if (!refused || (do_connect && check_places(conf, refused) != 0))
                rc = 1;
        for (int i = 0; refused && do_connect && i < conf->npipelines; i++) {
                const PipelineConf *p = &conf->pipelines[i];
                const SourceOps *so = connector_source(p->source->type);
                const SinkOps *ko = connector_sink(p->sink->type);
                CdcError err = {0};
                if (refused[i])
                        continue;
                if (!so || !ko) {
                        printf("pipeline %s: %s → %s is not supported yet\n", p->name, p->source->type, p->sink->type);
                        rc = 1;
                        continue;
                }
                if (so->check(p->source, p, &err) < 0) {
                        printf("pipeline %s: source %s: %s\n", p->name, p->source->name, err.message);
                        rc = 1;
                        continue;
                }
                if (ko->check(p->sink, p, &err) < 0) {
                        printf("pipeline %s: sink %s: %s\n", p->name, p->sink->name, err.message);
                        rc = 1;
                        continue;
                }
                printf("pipeline %s: %s → %s ok\n", p->name, p->source->name, p->sink->name);
        }
        free(refused);
        conf_free(conf);
        return rc;
}

/* ---- status ---- */

/* The conf of a running service to be asked through its endpoint; NULL (said on stderr) when it
 * cannot be read or has no endpoint. */
static Conf *load_for_asking(const char *path) {
        Conf *conf = NULL;
        int r = conf_load(path, stderr, &conf);
        if (r == -EINVAL)
                return NULL;
        if (r < 0) {
                fprintf(stderr, "cdcsync: cannot read %s: %s\n", path, strerror(-r));
                return NULL;
        }
        if (!conf->metrics_listen) {
                fprintf(stderr, "cdcsync: metrics_listen = off in %s, so the service cannot be asked — enable it\n",
                        path);
                conf_free(conf);
                return NULL;
        }
        return conf;
}

static int cmd_status(const char *path, bool json) {
        Conf *conf = load_for_asking(path);
        if (!conf)
                return 2;
        int r = status_print_auth(conf->metrics_listen, conf->metrics_user, conf->metrics_password, json, stdout,
                                  stderr);
        conf_free(conf);
        return r < 0 ? 1 : 0;
}

/* ---- pause, resume, restart ---- */

static int cmd_action(const char *path, const char *action, const char *pipeline, char *const *tables, int ntables) {
        Conf *conf = load_for_asking(path);
        if (!conf)
                return 2;
        /* The credentials the service checks: admin_user's, else the metrics ones. */
        const char *user = conf->admin_user ? conf->admin_user : conf->metrics_user;
        const char *pass = conf->admin_user ? conf->admin_password : conf->metrics_password;
        if (!user) {
                fprintf(stderr,
                        "cdcsync: %s has no admin credentials, and the service refuses %s without them: set "
                        "admin_user and admin_password_file in [service] (or metrics_user and "
                        "metrics_password_file), then restart cdcsync\n",
                        path, action);
                conf_free(conf);
                return 1;
        }
        int r = status_action_tables(conf->metrics_listen, user, pass, pipeline, action, tables, ntables, stdout,
                                     stderr);
        conf_free(conf);
        return r == -EINVAL ? 2 : r < 0 ? 1 : 0;
}

/* ---- sync-sequences ---- */

typedef struct {
        int counts[SEQ_FAILED + 1];
} SeqTally;

static void print_seq(void *userdata, const SeqNote *n) {
        SeqTally *t = userdata;
        t->counts[n->action]++;
        printf("%-7s %s: %s = %s -> %s", seqsync_action_name(n->action), n->column, n->source_seq,
               n->value ? n->value : "unused", n->sink_seq[0] ? n->sink_seq : "(none)");
        if (n->action == SEQ_SET || n->action == SEQ_AHEAD)
                printf(" (was %s)", n->before ? n->before : "unused");
        if (n->why)
                printf(": %s", n->why);
        putchar('\n');
}

/* Carried now, over connections of its own (the service need not run: after a cut-over's stop
 * is when it matters most). Exit 1 when a sequence could not be carried. */
static int cmd_sync_sequences(const char *path, const char *pipeline) {
        Conf *conf = NULL;
        int r = conf_load(path, stderr, &conf);
        if (r == -EINVAL)
                return 2;
        if (r < 0) {
                fprintf(stderr, "cdcsync: cannot read %s: %s\n", path, strerror(-r));
                return 2;
        }
        const PipelineConf *pc = NULL;
        for (int i = 0; i < conf->npipelines; i++)
                if (strcmp(conf->pipelines[i].name, pipeline) == 0)
                        pc = &conf->pipelines[i];
        if (!pc) {
                fprintf(stderr, "cdcsync: %s has no [pipeline.%s] — name one of its pipelines\n", path, pipeline);
                conf_free(conf);
                return 2;
        }
        SeqTally t = {0};
        CdcError err = {0};
        r = seqsync_run(pc, print_seq, &t, &err);
        int rc = 0;
        if (r < 0) {
                fprintf(stderr, "cdcsync: %s\n", err.message);
                rc = r == -EOPNOTSUPP ? 2 : 1;
        } else {
                int bad = t.counts[SEQ_MISSING] + t.counts[SEQ_FAILED];
                printf("pipeline %s: %d sequences set on the sink, %d already at or past the source, %d unused, %d "
                       "not carried\n",
                       pc->name, t.counts[SEQ_SET], t.counts[SEQ_AHEAD], t.counts[SEQ_UNUSED], bad);
                rc = bad > 0 ? 1 : 0;
        }
        conf_free(conf);
        return rc;
}

int main(int argc, char **argv) {
        const char *path = DEFAULT_CONF;
        bool do_connect = false, json = false;
        static const struct option opts[] = {
                {"config", required_argument, NULL, 'c'}, {"connect", no_argument, NULL, 'C'},
                {"json", no_argument, NULL, 'j'},         {"version", no_argument, NULL, 'V'},
                {"help", no_argument, NULL, 'h'},         {0},
        };
        int c;
        while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
                switch (c) {
                case 'c': path = optarg; break;
                case 'C': do_connect = true; break;
                case 'j': json = true; break;
                case 'V': printf("cdcsync %s\n", CDCSYNC_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        const char *cmd = optind < argc ? argv[optind++] : "run";
        if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0 || strcmp(cmd, "restart") == 0) {
                if (optind + 1 != argc) {
                        fprintf(stderr, "cdcsync: %s takes one pipeline name\n", cmd);
                        usage(stderr);
                        return 2;
                }
                return cmd_action(path, cmd, argv[optind], NULL, -1);
        }
        if (strcmp(cmd, "resnapshot") == 0) {
                if (optind >= argc) {
                        fprintf(stderr,
                                "cdcsync: resnapshot takes a pipeline name, then the tables (none: every one)\n");
                        usage(stderr);
                        return 2;
                }
                return cmd_action(path, cmd, argv[optind], argv + optind + 1, argc - optind - 1);
        }
        if (strcmp(cmd, "sync-sequences") == 0) {
                if (optind + 1 != argc) {
                        fprintf(stderr, "cdcsync: sync-sequences takes one pipeline name\n");
                        usage(stderr);
                        return 2;
                }
                return cmd_sync_sequences(path, argv[optind]);
        }
        if (optind < argc) {
                fprintf(stderr, "cdcsync: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        if (strcmp(cmd, "run") == 0)
                return cmd_run(path);
        if (strcmp(cmd, "check") == 0)
                return cmd_check(path, do_connect);
        if (strcmp(cmd, "status") == 0)
                return cmd_status(path, json);
        fprintf(stderr,
                "cdcsync: unknown command '%s' — use run, check, status, pause, resume, restart, resnapshot or "
                "sync-sequences\n",
                cmd);
        usage(stderr);
        return 2;
}
