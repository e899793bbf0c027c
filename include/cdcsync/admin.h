/* The admin API on the metrics listener (README "Admin API and web console"): which request is
 * which (routes), who may make it (credentials), and the conflict log reader. No I/O but the
 * conflict log's; metrics.c serves what these decide. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define ADMIN_NAME_MAX 128         /* bytes of a pipeline name in a path or a query */
#define ADMIN_BODY_MAX (64 * 1024) /* bytes of a request body */
#define ADMIN_CONFLICTS_DEFAULT 100
#define ADMIN_CONFLICTS_MAX 1000

typedef enum {
        ADMIN_ROUTE_CONSOLE,   /* GET /: the web console */
        ADMIN_ROUTE_PIPELINES, /* GET /api/pipelines */
        ADMIN_ROUTE_CONFLICTS, /* GET /api/conflicts?pipeline=&limit= */
        ADMIN_ROUTE_ACTION,    /* POST /api/pipelines/NAME/ACTION (admin_actions) */
} AdminRouteKind;

typedef struct {
        AdminRouteKind kind;
        bool mutation;                 /* changes state: needs the admin credentials */
        const char *allow;             /* the methods it takes, for 405's Allow header */
        char pipeline[ADMIN_NAME_MAX]; /* ADMIN_ROUTE_ACTION */
        const char *action;            /* ADMIN_ROUTE_ACTION: an entry of admin_actions (static) */
} AdminRoute;

/* The actions of POST /api/pipelines/NAME/ACTION, NULL-terminated. A new action is a name here
 * and a case in the service's AdminActionFn (engine/main.c). */
extern const char *const admin_actions[];

/* Which route url is. Returns 1 (*ret filled; *ret_method_ok says whether method is one it
 * takes: GET and HEAD for reads, POST for actions), 0 when url is not the admin API's (the
 * caller serves /metrics etc. or 404), -ENOENT for a path under /api/ that names nothing (an
 * unknown action, a pipeline name that is too long). */
int admin_route(const char *method, const char *url, AdminRoute *ret, bool *ret_method_ok);

/* Credentials: user and password both set, or both NULL (none configured). */
typedef struct {
        const char *user;
        const char *password;
} AdminCreds;

typedef enum {
        ADMIN_AUTH_OK,
        ADMIN_AUTH_DENIED,       /* 401: none given or wrong */
        ADMIN_AUTH_UNCONFIGURED, /* a mutation, and the conf has no credentials for one: refused */
} AdminAuth;

/* Who may make a request. Reads: anyone when the metrics endpoint has no basic auth, else the
 * metrics or the admin credentials. Mutations: the admin credentials, else (none configured) the
 * metrics ones; with neither, nobody. user/pass: what the request carried (NULL: nothing).
 * Compares in time independent of where the given values differ. */
AdminAuth admin_auth(const AdminCreds *admin, const AdminCreds *metrics, const char *user, const char *pass,
                     bool mutation);
/* A's and b's bytes equal, in time that depends only on expected's length. */
bool admin_ct_equal(const char *given, const char *expected);

/* Parses limit= of /api/conflicts: NULL → ADMIN_CONFLICTS_DEFAULT; 1..ADMIN_CONFLICTS_MAX.
 * Returns 0 or -EINVAL. */
int admin_parse_limit(const char *text, int *ret);

/* The newest `limit` records of the conflict log at path (JSON lines, appended oldest first),
 * newest first, of `pipeline` only when it is not NULL: *ret = {"conflicts": [...], "complete":
 * bool}; complete is false when the scan stopped at its bound before the file's start (a huge log
 * with few records of the pipeline). Memory stays bounded whatever the file holds: it is read
 * backwards in blocks, a line longer than a block's bound is skipped, and so is a line that is no
 * JSON object. A missing file is an empty log. Returns 0 or -errno. */
int admin_conflicts(const char *path, const char *pipeline, int limit, json_t **ret);
