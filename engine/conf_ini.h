/* Private to the conf module: the conf's INI text read into sections and entries with their line
 * numbers, and the FILE:LINE errors collected while reading and checking it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cdcsync/conf.h"

#define CONF_NAME_MAX 48 /* connector and pipeline names */

typedef struct {
        char *key, *value; /* owned: as written */
        char *expanded;    /* owned: ${ENV} expanded, once applied (NULL before) */
        int line;
} ConfEntry;

typedef enum { SEC_SERVICE, SEC_CONNECTOR, SEC_PIPELINE } ConfSectionKind;

typedef struct {
        ConfSectionKind kind;
        char *name;         /* owned: "service", or NAME of connector.NAME / pipeline.NAME */
        int line;           /* of its [header] */
        ConfEntry *entries; /* owned, nentries, in file order; no key twice */
        int nentries;
} ConfSection;

typedef struct {
        int line, seq;
        char *text; /* owned: "FILE:LINE: what — what to do" */
} ConfError;

typedef struct {
        Conf *conf;           /* being built; owned by conf_load */
        const char *path;     /* the conf file, as given */
        char *dir;            /* owned: its directory, the base of relative secret paths */
        bool others_can_read; /* group/other mode bits set: no literal passwords allowed */
        FILE *f;
        char *buf;    /* owned: the line being read, CONF_MAX_LINE + 2 bytes */
        size_t nread; /* bytes read so far */
        bool too_big; /* the file went on past CONF_MAX_FILE: reading stopped */
        int lineno;
        ConfSection *sections; /* owned, nsections, each [section] once, in file order */
        int nsections, cur;
        ConfError *errors; /* owned, nerrors */
        int nerrors;
        bool oom;
} ConfParser;

/* Opens and reads p->path into p->sections (syntax errors go to p->errors). Returns 0, or
 * -errno (written to errout) when the file cannot be read. */
int conf_ini_read(ConfParser *p, FILE *errout);
/* Writes the collected errors to errout, sorted by line. */
void conf_ini_report(ConfParser *p, FILE *errout);
/* Frees what the parser owns (not p->conf). */
void conf_ini_done(ConfParser *p);

/* Records "PATH:LINE: <fmt>" (bounded: stops after CONF_MAX_ERRORS). */
void conf_err(ConfParser *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* reallocarray to n + 1 elements; sets p->oom and returns NULL on failure (arr stays valid). */
void *conf_grow(ConfParser *p, void *arr, int n, size_t size);
/* 1 to CONF_NAME_MAX letters, digits, '_' or '-'. */
bool conf_valid_name(const char *s);
/* Strips blanks at both ends in place; returns the start. */
char *conf_trim(char *s);
/* Edit distance (with transpositions) for "did you mean"; 99 for long strings. */
int conf_edit_distance(const char *a, const char *b);
