/* The PostgreSQL sink's delete of a key range (CHANGE_RANGE, a re-snapshot's chunk: resnapshot.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/strbuf.h"
#include "postgres/pg_sink_int.h"
#include "postgres/pg_sql.h"

int pg_sink_range_statement(Sink *k, const Table *t, const Change *c, const char *schema, const char *name,
                            char **ret_sql, int *ret_np, CdcError *err) {
        int key = -1, nkeys = 0;
        for (int i = 0; i < t->ncols; i++)
                if (t->cols[i].key) {
                        key = i;
                        nkeys++;
                }
        if (nkeys != 1 || t->cols[key].cls != TYPE_INTEGER || !c->before || !c->after || !c->keep)
                return cdc_error(err, -EINVAL, false, CDC_ERR_SCHEMA,
                                 "sink %s: a key range of %s.%s cannot be deleted: its key (as it reaches the sink) is "
                                 "not one integer column — a masked key column cannot be copied again in ranges",
                                 k->conf->name, t->schema, t->name);
        if (pg_sink_grow(k, 3) < 0)
                return cdc_oom(err);
        char *qs = NULL, *qn = NULL, *qk = NULL;
        StrBuf b = {0};
        int np = 0, r = pg_sql_quote_ident(schema, &qs);
        if (r == 0)
                r = pg_sql_quote_ident(name, &qn);
        if (r == 0)
                r = pg_sql_quote_ident(t->cols[key].name, &qk);
        if (r < 0) {
                free(qs);
                free(qn);
                free(qk);
                return cdc_oom(err);
        }
        /* the keys kept as an array literal: "{1,5,7}" (integers only: nothing to quote) */
        StrBuf keep = {0};
        strbuf_puts(&keep, "{");
        strbuf_puts(&keep, c->keep);
        strbuf_puts(&keep, "}");
        strbuf_printf(&b, "DELETE FROM %s.%s WHERE true", qs, qn);
        if (c->before[key].kind == VALUE_TEXT) {
                k->params[np++] = c->before[key].data;
                strbuf_printf(&b, " AND %s > $%d", qk, np);
        }
        if (c->after[key].kind == VALUE_TEXT) {
                k->params[np++] = c->after[key].data;
                strbuf_printf(&b, " AND %s <= $%d", qk, np);
        }
        strbuf_printf(&b, " AND NOT (%s = ANY ($%d::bigint[]))", qk, np + 1);
        free(qs);
        free(qn);
        free(qk);
        char *keeptext = NULL;
        r = strbuf_finish(&keep, &keeptext);
        if (r == 0)
                r = strbuf_finish(&b, ret_sql);
        else
                strbuf_free(&b);
        if (r < 0) {
                free(keeptext);
                return cdc_oom(err);
        }
        /* the text lives until the statement is sent: kept with the sink, freed with the next */
        free(k->range_keep);
        k->range_keep = keeptext;
        k->params[np++] = keeptext;
        *ret_np = np;
        return 0;
}
