/* Private to the conf module: the key tables that drive parsing, checking and the documentation
 * (conf_keys.c), shared by conf.c (loading) and conf_doc.c (the reference conf and the manual). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef enum {
        K_STR,
        K_DSN,          /* char *: a literal password in it needs a private conf */
        K_CHOICE,       /* char *: one of values */
        K_INDEX,        /* int-sized enum: the index of the value in values */
        K_FIRST_CHOICE, /* bool: whether the value is the first of values */
        K_LOGLEVEL,
        K_INT,  /* int in min..max */
        K_U32,  /* uint32_t in min..max */
        K_BOOL, /* yes|no|true|false|on|off|1|0 */
        K_LISTEN,
        K_SLOT,
        K_TOPIC,
        K_TABLES,
        K_NAMES,
        K_MAPS,
        K_PASSWORD,
        K_PASSWORD_FILE,
        K_KAFKA_PROP,
        K_SIZE, /* int64_t bytes: a whole number with an optional unit (kB MB GB TB, KiB MiB GiB TiB), or off (0) */
} KeyKind;

enum { T_PG = 1, T_MY = 2, T_KAFKA = 4, T_ALL = 7 };

typedef struct {
        const char *name;
        KeyKind kind;
        const char *def;   /* default as written in the conf; NULL: none */
        unsigned types;    /* connector types it applies to (T_ALL outside connectors) */
        unsigned required; /* connector types that must set it (T_ALL: always required) */
        bool reloadable;   /* SIGHUP applies it; else a restart is needed */
        bool secret;       /* its value is never echoed */
        size_t off;        /* field in Conf / ConnectorConf / PipelineConf */
        size_t count_off;  /* int count field of a list */
        long long min, max;
        const char *values; /* accepted values, for errors and the reference */
        const char *help;
} ConfKey;

#define CONF_MAX_KEYS 32 /* keys in one table at most: section_apply's seen[] */

extern const ConfKey conf_service_keys[], conf_connector_keys[], conf_pipeline_keys[];
extern const size_t conf_nservice_keys, conf_nconnector_keys, conf_npipeline_keys;

/* "postgres and mysql" for a T_* mask. */
const char *conf_types_text(unsigned types, char *buf, size_t len);
/* The name of the type of T_* bit t (0 is T_PG's), as the `type` key's values list it, in buf. */
const char *conf_type_name(int t, char *buf, size_t len);
