/* `cdcsync status`: asks the running service's /status endpoint and prints it. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

/* GETs /status from listen_addr ("127.0.0.1:9780", "[::1]:9780"; the conf's metrics_listen) and
 * prints one aligned line per pipeline to out (PIPELINE STATE SOURCE_POS APPLIED_POS LAG
 * EVENTS/S LAST_ERROR), or the JSON as received when json is set. Explains failures on err.
 * Returns 0, -ECONNREFUSED (nothing listens: the service is not running), -ETIMEDOUT, -EINVAL
 * (bad address), -EPROTO / -EBADMSG (an answer that is not a status), or another -errno. */
int status_print(const char *listen_addr, bool json, FILE *out, FILE *err);
/* status_print with HTTP basic auth (user and password; NULL: none), for an endpoint with
 * metrics_user set. */
int status_print_auth(const char *listen_addr, const char *user, const char *password, bool json, FILE *out, FILE *err);

/* The part of status_print that reads the answer: answer is the whole HTTP reply as received
 * (answer_len bytes, NUL-terminated), listen_addr only names the service in messages. Same
 * returns; the answer is the peer's word, so any bytes are refused or printed, never a crash. */
int status_print_answer(const char *answer, size_t answer_len, const char *listen_addr, bool json, FILE *out,
                        FILE *err);

/* `cdcsync pause|resume|restart PIPELINE`: POSTs /api/pipelines/PIPELINE/ACTION to the running
 * service at listen_addr with basic auth (user and password; NULL: none) and prints its answer
 * (out) or what went wrong (err). Returns 0, -ECONNREFUSED (not running), -ENOENT (no such
 * pipeline), -EACCES (credentials refused or none configured), -EINVAL, -EPROTO, or -errno. */
int status_action(const char *listen_addr, const char *user, const char *password, const char *pipeline,
                  const char *action, FILE *out, FILE *err);
/* status_action with a JSON body {"tables": [tables...]} (`cdcsync resnapshot PIPELINE TABLE...`);
 * ntables -1: no body. */
int status_action_tables(const char *listen_addr, const char *user, const char *password, const char *pipeline,
                         const char *action, char *const *tables, int ntables, FILE *out, FILE *err);
/* The part of status_action that reads the whole HTTP answer (NUL-terminated). Same returns. */
int status_action_answer(const char *answer, size_t answer_len, const char *listen_addr, const char *pipeline,
                         const char *action, FILE *out, FILE *err);
