/* Secrets in the conf: ${ENV} expansion, password files and systemd credentials, and spotting
 * passwords written literally in the conf. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* The largest secret file read, in bytes: a password, not a key ring. */
#define SECRET_MAX_FILE 4096

/* Expands every ${NAME} in raw from the environment; "$$" is a literal '$', any other '$' stays.
 * *ret (owned by the caller) on success. On -EINVAL err holds "what — what to do" (it names the
 * variable, never a value); -ENOMEM. *ret untouched on failure. */
int secret_expand_env(const char *raw, char **ret, char *err, size_t errlen);

/* Reads a secret file: a value without '/' names a systemd credential when $CREDENTIALS_DIRECTORY
 * is set, a relative path is relative to base_dir. One trailing newline is stripped. *ret (owned
 * by the caller) on success; on failure -errno and err holds "what — what to do". */
int secret_read_file(const char *value, const char *base_dir, char **ret, char *err, size_t errlen);

/* Whether raw (as written in the conf, before expansion) holds text besides ${NAME} references:
 * a password written there literally. */
bool secret_is_literal(const char *raw);

/* Whether a libpq conninfo ("k=v ..." or a postgres:// URI), as written, holds a literal password. */
bool secret_dsn_has_password(const char *raw);
