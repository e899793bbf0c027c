/* The MySQL/MariaDB sink's delete of a key range (CHANGE_RANGE, a re-snapshot's chunk: resnapshot.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cdcsync/strbuf.h"
#include "mysql/mysql_sink_int.h"
#include "mysql/mysql_sql.h"

int mysql_sink_range_delete(Sink *k, const Table *t, const Change *c, const char *schema, const char *name,
                            CdcError *err) {
        int key = -1, nkeys = 0;
        for (int i = 0; i < t->ncols; i++)
                if (t->cols[i].key) {
                        key = i;
                        nkeys++;
                }
        if (nkeys != 1 || t->cols[key].cls != TYPE_INTEGER || !c->before || !c->after || !c->keep)
                return cdc_error(err, -EINVAL, false, CDC_ERR_SCHEMA,
                                 "%s a key range of %s.%s cannot be deleted: its key (as it reaches the sink) is not "
                                 "one integer column — a masked key column cannot be copied again in ranges",
                                 k->ctx, t->schema, t->name);
        Param p[3];
        int np = 0, r = 0;
        memset(p, 0, sizeof(p));
        StrBuf q = {0};
        strbuf_puts(&q, "DELETE FROM ");
        mysql_sql_table(&q, schema, name);
        strbuf_puts(&q, " WHERE 1");
        if (c->before[key].kind == VALUE_TEXT) {
                strbuf_puts(&q, " AND ");
                mysql_sql_ident(&q, t->cols[key].name);
                strbuf_puts(&q, " > ?");
                r = mysql_sink_make_param(k, t, key, &c->before[key], &p[np++], err);
        }
        if (r == 0 && c->after[key].kind == VALUE_TEXT) {
                strbuf_puts(&q, " AND ");
                mysql_sql_ident(&q, t->cols[key].name);
                strbuf_puts(&q, " <= ?");
                r = mysql_sink_make_param(k, t, key, &c->after[key], &p[np++], err);
        }
        /* the keys kept, "1,5,7": integers, so FIND_IN_SET's commas cannot be in a value */
        strbuf_puts(&q, " AND NOT FIND_IN_SET(");
        mysql_sql_ident(&q, t->cols[key].name);
        strbuf_puts(&q, ", ?)");
        if (r == 0) {
                p[np].len = strlen(c->keep);
                p[np].data = strdup(c->keep);
                if (!p[np++].data || q.oom)
                        r = cdc_oom(err);
        }
        char *what = r == 0 ? strdup("range delete") : NULL;
        if (r == 0 && !what)
                r = cdc_oom(err);
        /* sent at once, between what came before and what comes after: rows pending in runs that
         * may be reordered must not pass it either way */
        if (r == 0)
                r = mysql_sink_pending_flush(k, err);
        if (r == 0)
                r = mysql_sink_run_add(k, q.data, p, np, false, "range delete", what, NULL, NULL, 0, t, schema, name,
                                       MULTI_NONE, err);
        else
                free(what);
        if (r == 0)
                r = mysql_sink_pending_flush(k, err);
        mysql_sink_params_free(p, np);
        free(q.data);
        return r;
}
