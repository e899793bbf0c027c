/* The MySQL/MariaDB sink's sender thread (apply_workers = 1): a batch's statements, checkpoint
 * and COMMIT run on the server while the sink thread turns the next batch's changes into
 * statements. One session answers one statement at a time, so without it the server waits while
 * the sink builds and the sink waits while the server applies (sysbench: ~1 s of the sink's CPU
 * against ~8 s of the server's for 600,000 row changes, one after the other).
 *
 * The session belongs to one thread at a time: the sink thread hands the pending runs (and, at
 * commit(), the checkpoint) over as one job and goes on; anything else it sends first waits for
 * the job (mysql_sink_idle). One job at a time: a batch being applied and one being built, so
 * memory stays at two batches' runs. The job's result comes back at the next wait or through
 * poll_durable(): a failure rolls the session back, stays until rollback(), and every later call
 * returns it, so nothing after a failed batch is applied. */
#include <pthread.h>

#include "cdcsync/now.h"
#include "mysql/mysql_sink_int.h"

struct SinkSender {
        pthread_t th;
        pthread_mutex_t mu;
        pthread_cond_t go, done;
        bool busy, stop;
        int failed; /* the failed job's return code, until rollback() */
        CdcError err;
        /* the job: START TRANSACTION first (begin), the runs in order, then the checkpoint and
         * COMMIT (commit) */
        Run runs[RUNS_MAX];
        int nruns;
        bool begin, commit;
        Checkpoint ckpt;
        char ts[96];
        /* the newest batch it committed */
        bool have_durable;
        Position durable;
};

static int job_run(Sink *k, SinkSender *x, CdcError *err) {
        int r = 0;
        if (x->begin && mysql_query(k->m, "START TRANSACTION"))
                r = mysql_sink_error(k, NULL, "START TRANSACTION", err);
        /* the runs are emptied by the sink thread, which allocated their rows (hand_over): glibc
         * frees another thread's blocks slowly, a third of cdcsync's CPU on sysbench */
        for (int i = 0; r == 0 && i < x->nruns; i++)
                r = mysql_sink_run_exec(k, &x->runs[i], err);
        if (r == 0 && x->commit)
                r = mysql_sink_commit_batch(k, &x->ckpt, x->ts, err);
        if (r < 0)
                mysql_rollback(k->m);
        return r;
}

static void *sender_main(void *arg) {
        Sink *k = arg;
        SinkSender *x = k->tx;
        mysql_thread_init();
        pthread_mutex_lock(&x->mu);
        for (;;) {
                while (!x->busy && !x->stop)
                        pthread_cond_wait(&x->go, &x->mu);
                if (!x->busy)
                        break;
                pthread_mutex_unlock(&x->mu);
                CdcError e = {0};
                int r = job_run(k, x, &e);
                pthread_mutex_lock(&x->mu);
                if (r < 0 && !x->failed) {
                        x->failed = r;
                        x->err = e;
                } else if (r == 0 && x->commit) {
                        x->have_durable = true;
                        x->durable = x->ckpt.pos;
                }
                x->busy = false;
                pthread_cond_broadcast(&x->done);
        }
        pthread_mutex_unlock(&x->mu);
        mysql_thread_end();
        return NULL;
}

int mysql_sink_sender_open(Sink *k, CdcError *err) {
        SinkSender *x = calloc(1, sizeof(*x));
        if (!x)
                return cdc_oom(err);
        pthread_mutex_init(&x->mu, NULL);
        pthread_cond_init(&x->go, NULL);
        pthread_cond_init(&x->done, NULL);
        k->tx = x;
        if (pthread_create(&x->th, NULL, sender_main, k) != 0) {
                k->tx = NULL;
                pthread_cond_destroy(&x->go);
                pthread_cond_destroy(&x->done);
                pthread_mutex_destroy(&x->mu);
                free(x);
                return cdc_error(err, -EAGAIN, true, CDC_ERR_INTERNAL, "%s cannot start the sink's sender thread",
                                 k->ctx);
        }
        return 0;
}

void mysql_sink_sender_close(Sink *k) {
        SinkSender *x = k->tx;
        if (!x)
                return;
        pthread_mutex_lock(&x->mu);
        x->stop = true;
        pthread_cond_signal(&x->go);
        pthread_mutex_unlock(&x->mu);
        pthread_join(x->th, NULL); /* a job under way ends first: the session's timeouts bound it */
        for (int i = 0; i < RUNS_MAX; i++)
                mysql_sink_run_free(&x->runs[i]);
        pthread_cond_destroy(&x->go);
        pthread_cond_destroy(&x->done);
        pthread_mutex_destroy(&x->mu);
        free(x);
        k->tx = NULL;
}

/* Waits for the job under way; *err: a failed job's error (x->mu held). */
static int wait_job(SinkSender *x, CdcError *err) {
        while (x->busy)
                pthread_cond_wait(&x->done, &x->mu);
        if (x->failed)
                *err = x->err;
        return x->failed;
}

int mysql_sink_idle(Sink *k, CdcError *err) {
        SinkSender *x = k->tx;
        if (!x)
                return 0;
        pthread_mutex_lock(&x->mu);
        int r = wait_job(x, err);
        pthread_mutex_unlock(&x->mu);
        return r;
}

int mysql_sink_ready(Sink *k, CdcError *err) {
        int r = mysql_sink_idle(k, err);
        if (r == 0 && k->begin_due) {
                k->begin_due = false;
                r = mysql_sink_simple(k, "START TRANSACTION", err);
        }
        return r;
}

int mysql_sink_hand_over(Sink *k, const Checkpoint *ckpt, const char *ts, CdcError *err) {
        SinkSender *x = k->tx;
        pthread_mutex_lock(&x->mu);
        int r = wait_job(x, err);
        if (r < 0) {
                pthread_mutex_unlock(&x->mu);
                return r;
        }
        for (int i = 0; i < x->nruns; i++)
                mysql_sink_run_clear(&x->runs[i]);
        for (int i = 0; i < k->nruns; i++) { /* the arrays swap: each side keeps what it grew */
                mysql_sink_run_compact(&k->runs[i]);
                Run u = x->runs[i];
                x->runs[i] = k->runs[i];
                k->runs[i] = u;
        }
        x->nruns = k->nruns;
        x->begin = k->begin_due;
        x->commit = ckpt != NULL;
        if (ckpt) {
                x->ckpt = *ckpt;
                snprintf(x->ts, sizeof(x->ts), "%s", ts);
        }
        x->busy = true;
        pthread_cond_signal(&x->go);
        pthread_mutex_unlock(&x->mu);
        k->begin_due = false;
        k->nruns = 0;
        mysql_sink_keys_reset(k);
        return 0;
}

int mysql_sink_sender_poll(Sink *k, int timeout_ms, Position *ret, bool *ret_found, CdcError *err) {
        SinkSender *x = k->tx;
        struct timespec until = now_after_ms(CLOCK_REALTIME, timeout_ms);
        pthread_mutex_lock(&x->mu);
        while (x->busy && timeout_ms > 0 && pthread_cond_timedwait(&x->done, &x->mu, &until) == 0)
                ;
        int r = x->failed;
        if (r < 0)
                *err = x->err;
        *ret_found = x->have_durable;
        *ret = x->have_durable ? x->durable : (Position){0};
        pthread_mutex_unlock(&x->mu);
        return r;
}

void mysql_sink_sender_reset(Sink *k) {
        SinkSender *x = k->tx;
        if (!x)
                return;
        pthread_mutex_lock(&x->mu);
        while (x->busy)
                pthread_cond_wait(&x->done, &x->mu);
        x->failed = 0;
        pthread_mutex_unlock(&x->mu);
        k->begin_due = false;
}
