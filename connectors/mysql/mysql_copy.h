/* The MySQL/MariaDB source's chunked, parallel copy (mysql_copy.c, run by chunk_copy.h): tables
 * cut into primary-key ranges (mysql_chunks.h), read by reader connections that share one
 * consistent snapshot, each chunk handed on as one source transaction with the record that it is
 * done (copies.h). */
#pragma once

#include <mysql.h>

#include "cdcsync/chunk_copy.h"
#include "cdcsync/copies.h"
#include "mysql/mysql_chunks.h"
#include "mysql/mysql_source_int.h"

typedef struct MysqlCopy MysqlCopy;

/* A copy whose transactions commit at pos with checkpoint text ckpt_text (copied). chunked: a
 * transaction and a record per chunk (the sink keeps records); else the whole copy is one
 * transaction and nothing is recorded but each table's final record. */
int mysql_copy_new(Source *s, PipelineIO *io, Position pos, const char *ckpt_text, bool chunked, MysqlCopy **ret,
                   CdcError *err);
/* Accepts NULL, returns NULL. */
MysqlCopy *mysql_copy_free(MysqlCopy *cp);

/* Adds a table to copy (st: taken, also on failure). Its chunks are planned around `done` (ndone
 * chunks done before, with done_rows rows) from the key's MIN and MAX read on `conn` (a reader, in
 * the copy's snapshot) and the server's row estimate; a table whose primary key does not begin
 * with an integer column (or has none) is one chunk. Its rows go with change_flags; truncate: a
 * TRUNCATE (truncate_flags) goes with its first chunk; once every chunk is done its record
 * becomes final_state as of final_pos. */
int mysql_copy_add_table(MysqlCopy *cp, MYSQL *conn, SnapTable *st, uint32_t change_flags, bool truncate,
                         uint32_t truncate_flags, const MysqlKeyRange *done, int ndone, uint64_t done_rows,
                         CopyState final_state, Position final_pos, CdcError *err);

/* Reads every chunk planned with the readers (n connections in one snapshot, borrowed), one
 * thread each, logging progress, and hands them on in order of completion. Returns 0, or the
 * first reader's error (-ECANCELED when the pipeline stops). */
int mysql_copy_run(MysqlCopy *cp, MYSQL **readers, int n, CdcError *err);
