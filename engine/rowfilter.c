/* Row filters (rowfilter.h): a recursive-descent parser into a small tree, and its evaluation in
 * SQL's three-valued logic plus "missing" (a value the image does not carry). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cdcsync/rowfilter.h"
#include "cdcsync/strbuf.h"

#define MAX_DEPTH 64 /* nesting of parentheses and NOTs: the parser's recursion stays small */

typedef enum { LIT_NULL, LIT_TEXT, LIT_NUMBER, LIT_BOOL } LitKind;

typedef struct {
        int col; /* index into the filter's columns, or -1: a literal */
        LitKind lit;
        char *text; /* LIT_TEXT, LIT_NUMBER: owned */
        bool truth; /* LIT_BOOL */
} Operand;

typedef enum { N_OR, N_AND, N_NOT, N_CMP, N_IN, N_ISNULL } NodeKind;
typedef enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE } CmpOp;

typedef struct Node Node;
struct Node {
        NodeKind kind;
        bool negated; /* N_IN: NOT IN, N_ISNULL: IS NOT NULL */
        CmpOp op;
        Operand a, b;  /* N_CMP: a op b; N_IN, N_ISNULL: a */
        Operand *list; /* N_IN */
        int nlist;
        Node **kids; /* N_OR, N_AND: nkids; N_NOT: 1 */
        int nkids;
};

struct RowFilter {
        Node *root;
        char **cols;
        bool *quoted; /* per column: written "quoted" (matched exactly only) */
        int ncols;
};

/* ---- tokens ---- */

typedef enum { T_END, T_IDENT, T_QIDENT, T_STRING, T_NUMBER, T_LPAREN, T_RPAREN, T_COMMA, T_CMP, T_BAD } TokKind;

typedef struct {
        const char *src;
        const char *p; /* next unread byte */
        TokKind kind;
        const char *start; /* the current token's text */
        size_t len;
        char *text; /* T_STRING, T_QIDENT: unquoted text, owned; T_IDENT, T_NUMBER: a copy */
        CmpOp op;
        int depth;
        char *err;
        size_t errlen;
        int oom;
        RowFilter *f;
} Parser;

static void next(Parser *ps) {
        free(ps->text);
        ps->text = NULL;
        while (isspace((unsigned char)*ps->p))
                ps->p++;
        const char *s = ps->p;
        ps->start = s;
        if (!*s) {
                ps->kind = T_END;
                ps->len = 0;
                return;
        }
        if (*s == '(' || *s == ')' || *s == ',') {
                ps->kind = *s == '(' ? T_LPAREN : *s == ')' ? T_RPAREN : T_COMMA;
                ps->p = s + 1;
        } else if (*s == '=' || *s == '<' || *s == '>' || (*s == '!' && s[1] == '=')) {
                ps->kind = T_CMP;
                if (s[0] == '<' && s[1] == '>')
                        ps->op = CMP_NE, ps->p = s + 2;
                else if (s[0] == '!' && s[1] == '=')
                        ps->op = CMP_NE, ps->p = s + 2;
                else if (s[1] == '=' && (s[0] == '<' || s[0] == '>'))
                        ps->op = s[0] == '<' ? CMP_LE : CMP_GE, ps->p = s + 2;
                else
                        ps->op = s[0] == '=' ? CMP_EQ : s[0] == '<' ? CMP_LT : CMP_GT, ps->p = s + 1;
        } else if (*s == '\'' || *s == '"') {
                char q = *s;
                size_t n = 0;
                const char *r = s + 1;
                char *out = malloc(strlen(s) + 1);
                if (!out) {
                        ps->oom = 1;
                        ps->kind = T_BAD;
                        return;
                }
                for (;;) {
                        if (!*r) {
                                free(out);
                                ps->kind = T_BAD; /* unterminated */
                                ps->p = r;
                                ps->len = (size_t)(r - s);
                                return;
                        }
                        if (*r == q) {
                                if (r[1] == q) {
                                        out[n++] = q;
                                        r += 2;
                                        continue;
                                }
                                r++;
                                break;
                        }
                        out[n++] = *r++;
                }
                out[n] = '\0';
                ps->text = out;
                ps->kind = q == '\'' ? T_STRING : T_QIDENT;
                ps->p = r;
        } else if (isdigit((unsigned char)*s) ||
                   ((*s == '-' || *s == '+' || *s == '.') && (isdigit((unsigned char)s[1]) || s[1] == '.'))) {
                char *end;
                errno = 0;
                (void)strtod(s, &end);
                ps->kind = end > s && !isalpha((unsigned char)*end) && *end != '_' ? T_NUMBER : T_BAD;
                ps->p = end > s ? end : s + 1;
        } else if (isalpha((unsigned char)*s) || *s == '_') {
                const char *r = s;
                while (isalnum((unsigned char)*r) || *r == '_' || *r == '$')
                        r++;
                ps->kind = T_IDENT;
                ps->p = r;
        } else {
                ps->kind = T_BAD;
                ps->p = s + 1;
        }
        ps->len = (size_t)(ps->p - s);
        if ((ps->kind == T_IDENT || ps->kind == T_NUMBER) && !(ps->text = strndup(s, ps->len)))
                ps->oom = 1, ps->kind = T_BAD;
}

static bool keyword(const Parser *ps, const char *kw) {
        return ps->kind == T_IDENT && strlen(kw) == ps->len && strncasecmp(ps->start, kw, ps->len) == 0;
}

static bool reserved(const Parser *ps) {
        static const char *const kws[] = {"AND", "OR", "NOT", "IN", "IS", "NULL", "TRUE", "FALSE"};
        for (size_t i = 0; i < sizeof(kws) / sizeof(kws[0]); i++)
                if (keyword(ps, kws[i]))
                        return true;
        return false;
}

static Node *fail(Parser *ps, const char *expected) {
        if (ps->oom || ps->err[0])
                return NULL;
        size_t at = (size_t)(ps->start - ps->src);
        if (ps->kind == T_END)
                snprintf(ps->err, ps->errlen, "the expression ends where %s was expected", expected);
        else if (ps->kind == T_BAD && (*ps->start == '\'' || *ps->start == '"'))
                snprintf(ps->err, ps->errlen, "the quote at character %zu is never closed", at + 1);
        else
                snprintf(ps->err, ps->errlen, "at character %zu ('%.*s'): expected %s", at + 1,
                         (int)(ps->len > 20 ? 20 : ps->len), ps->start, expected);
        return NULL;
}

static void node_free(Node *n) {
        if (!n)
                return;
        for (int i = 0; i < n->nkids; i++)
                node_free(n->kids[i]);
        free(n->kids);
        free(n->a.text);
        free(n->b.text);
        for (int i = 0; i < n->nlist; i++)
                free(n->list[i].text);
        free(n->list);
        free(n);
}

static Node *node_new(Parser *ps, NodeKind kind) {
        Node *n = calloc(1, sizeof(*n));
        if (!n)
                ps->oom = 1;
        else
                n->kind = kind, n->a.col = n->b.col = -1;
        return n;
}

static int add_kid(Parser *ps, Node *n, Node *kid) {
        Node **k = realloc(n->kids, (size_t)(n->nkids + 1) * sizeof(*k));
        if (!k) {
                ps->oom = 1;
                node_free(kid);
                return -1;
        }
        n->kids = k;
        n->kids[n->nkids++] = kid;
        return 0;
}

static int column_slot(Parser *ps, const char *name, bool quoted) {
        RowFilter *f = ps->f;
        for (int i = 0; i < f->ncols; i++)
                if (strcmp(f->cols[i], name) == 0 && f->quoted[i] == quoted)
                        return i;
        char **c = realloc(f->cols, (size_t)(f->ncols + 1) * sizeof(*c));
        if (c)
                f->cols = c;
        bool *q = c ? realloc(f->quoted, (size_t)(f->ncols + 1) * sizeof(*q)) : NULL;
        if (q)
                f->quoted = q;
        char *dup = q ? strdup(name) : NULL;
        if (!dup) {
                ps->oom = 1;
                return -1;
        }
        f->cols[f->ncols] = dup;
        f->quoted[f->ncols] = quoted;
        return f->ncols++;
}

/* A literal (column = false) or an operand; takes the token. */
static bool operand(Parser *ps, Operand *o, bool column) {
        *o = (Operand){.col = -1};
        if (ps->kind == T_STRING || ps->kind == T_NUMBER) {
                o->lit = ps->kind == T_STRING ? LIT_TEXT : LIT_NUMBER;
                o->text = ps->text;
                ps->text = NULL;
        } else if (keyword(ps, "NULL")) {
                o->lit = LIT_NULL;
        } else if (keyword(ps, "TRUE") || keyword(ps, "FALSE")) {
                o->lit = LIT_BOOL;
                o->truth = keyword(ps, "TRUE");
        } else if (column && (ps->kind == T_QIDENT || (ps->kind == T_IDENT && !reserved(ps)))) {
                o->col = column_slot(ps, ps->text, ps->kind == T_QIDENT);
                if (o->col < 0)
                        return false;
        } else {
                fail(ps, column ? "a column name or a literal ('text', a number, TRUE, FALSE, NULL)"
                                : "a literal ('text', a number, TRUE, FALSE, NULL)");
                return false;
        }
        next(ps);
        return true;
}

static Node *parse_or(Parser *ps);

static Node *parse_primary(Parser *ps) {
        if (ps->kind == T_LPAREN) {
                if (++ps->depth > MAX_DEPTH)
                        return fail(ps, "fewer nested parentheses");
                next(ps);
                Node *n = parse_or(ps);
                if (n && ps->kind != T_RPAREN) {
                        node_free(n);
                        return fail(ps, "')'");
                }
                ps->depth--;
                next(ps);
                return n;
        }
        Operand a;
        if (!operand(ps, &a, true))
                return NULL;
        Node *n = NULL;
        if (keyword(ps, "IS")) {
                next(ps);
                n = node_new(ps, N_ISNULL);
                if (n && keyword(ps, "NOT"))
                        n->negated = true, next(ps);
                if (n && !keyword(ps, "NULL")) {
                        free(a.text);
                        node_free(n);
                        return fail(ps, "NULL after IS [NOT]");
                }
                next(ps);
        } else if (keyword(ps, "IN") || keyword(ps, "NOT")) {
                n = node_new(ps, N_IN);
                if (n && keyword(ps, "NOT")) {
                        n->negated = true;
                        next(ps);
                        if (!keyword(ps, "IN")) {
                                free(a.text);
                                node_free(n);
                                return fail(ps, "IN after NOT");
                        }
                }
                next(ps);
                if (n && ps->kind != T_LPAREN) {
                        free(a.text);
                        node_free(n);
                        return fail(ps, "'(' after IN");
                }
                next(ps);
                while (n) {
                        Operand *l = realloc(n->list, (size_t)(n->nlist + 1) * sizeof(*l));
                        if (!l) {
                                ps->oom = 1;
                                break;
                        }
                        n->list = l;
                        if (!operand(ps, &n->list[n->nlist], false))
                                break;
                        n->nlist++;
                        if (ps->kind == T_RPAREN) {
                                next(ps);
                                n->a = a;
                                return n;
                        }
                        if (ps->kind != T_COMMA) {
                                fail(ps, "',' or ')' in the IN list");
                                break;
                        }
                        next(ps);
                }
                free(a.text);
                node_free(n);
                return NULL;
        } else if (ps->kind == T_CMP) {
                n = node_new(ps, N_CMP);
                if (n)
                        n->op = ps->op;
                next(ps);
                if (n && !operand(ps, &n->b, true)) {
                        free(a.text);
                        node_free(n);
                        return NULL;
                }
        } else {
                free(a.text);
                return fail(ps, "a comparison (=, <>, !=, <, <=, >, >=), IN, NOT IN or IS [NOT] NULL");
        }
        if (!n) {
                free(a.text);
                return NULL;
        }
        n->a = a;
        return n;
}

static Node *parse_not(Parser *ps) {
        if (!keyword(ps, "NOT"))
                return parse_primary(ps);
        if (++ps->depth > MAX_DEPTH)
                return fail(ps, "fewer nested NOTs");
        next(ps);
        Node *kid = parse_not(ps);
        ps->depth--;
        if (!kid)
                return NULL;
        Node *n = node_new(ps, N_NOT);
        if (!n || add_kid(ps, n, kid) < 0) {
                node_free(n ? NULL : kid);
                node_free(n);
                return NULL;
        }
        return n;
}

static Node *parse_list(Parser *ps, NodeKind kind, const char *kw, Node *(*sub)(Parser *)) {
        Node *first = sub(ps);
        if (!first || !keyword(ps, kw))
                return first;
        Node *n = node_new(ps, kind);
        if (!n || add_kid(ps, n, first) < 0) {
                node_free(n ? NULL : first);
                node_free(n);
                return NULL;
        }
        while (keyword(ps, kw)) {
                next(ps);
                Node *k = sub(ps);
                if (!k || add_kid(ps, n, k) < 0) {
                        node_free(n);
                        return NULL;
                }
        }
        return n;
}

static Node *parse_and(Parser *ps) {
        return parse_list(ps, N_AND, "AND", parse_not);
}
static Node *parse_or(Parser *ps) {
        return parse_list(ps, N_OR, "OR", parse_and);
}

int rowfilter_parse(const char *expr, RowFilter **ret, char *err, size_t errlen) {
        *ret = NULL;
        err[0] = '\0';
        RowFilter *f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        Parser ps = {.src = expr, .p = expr, .err = err, .errlen = errlen, .f = f};
        next(&ps);
        if (ps.kind == T_END) {
                snprintf(err, errlen, "the expression is empty");
                rowfilter_free(f);
                return -EINVAL;
        }
        f->root = parse_or(&ps);
        if (f->root && ps.kind != T_END) {
                fail(&ps, "AND, OR or the end of the expression");
                node_free(f->root);
                f->root = NULL;
        }
        free(ps.text);
        if (!f->root) {
                rowfilter_free(f);
                if (ps.oom) {
                        snprintf(err, errlen, "out of memory");
                        return -ENOMEM;
                }
                return -EINVAL;
        }
        *ret = f;
        return 0;
}

RowFilter *rowfilter_free(RowFilter *f) {
        if (!f)
                return NULL;
        node_free(f->root);
        for (int i = 0; i < f->ncols; i++)
                free(f->cols[i]);
        free(f->cols);
        free(f->quoted);
        free(f);
        return NULL;
}

int rowfilter_ncolumns(const RowFilter *f) {
        return f->ncols;
}
const char *rowfilter_column(const RowFilter *f, int i) {
        return f->cols[i];
}

/* ---- comparing values ---- */

typedef enum { MODE_TEXT, MODE_NUMBER, MODE_BOOL } Mode;

static bool numeric_class(TypeClass c) {
        return c == TYPE_INTEGER || c == TYPE_NUMERIC || c == TYPE_FLOAT;
}

static Mode mode_of(const Table *t, const int *idx, const Operand *a, const Operand *b) {
        const Operand *ops[2] = {a, b};
        for (int i = 0; i < 2; i++)
                if (ops[i] && ops[i]->col >= 0) {
                        TypeClass c = t->cols[idx[ops[i]->col]].cls;
                        if (numeric_class(c))
                                return MODE_NUMBER;
                        if (c == TYPE_BOOLEAN)
                                return MODE_BOOL;
                }
        if (a->col < 0 && b && b->col < 0 && a->lit == LIT_NUMBER && b->lit == LIT_NUMBER)
                return MODE_NUMBER;
        return MODE_TEXT;
}

/* A plain decimal: [+-]digits[.digits]. */
typedef struct {
        bool neg;
        const char *ip; /* integer digits without leading zeros */
        size_t ilen;
        const char *fp; /* fraction digits without trailing zeros */
        size_t flen;
} Decimal;

static bool decimal_parse(const char *s, size_t len, Decimal *d) {
        const char *e = s + len;
        while (s < e && isspace((unsigned char)*s))
                s++;
        *d = (Decimal){0};
        if (s < e && (*s == '-' || *s == '+'))
                d->neg = *s++ == '-';
        const char *i0 = s;
        while (s < e && isdigit((unsigned char)*s))
                s++;
        const char *i1 = s, *f0 = s, *f1 = s;
        if (s < e && *s == '.') {
                f0 = ++s;
                while (s < e && isdigit((unsigned char)*s))
                        s++;
                f1 = s;
        }
        if (s != e || (i1 == i0 && f1 == f0))
                return false;
        while (i0 < i1 && *i0 == '0')
                i0++;
        while (f1 > f0 && f1[-1] == '0')
                f1--;
        d->ip = i0, d->ilen = (size_t)(i1 - i0), d->fp = f0, d->flen = (size_t)(f1 - f0);
        if (d->ilen == 0 && d->flen == 0)
                d->neg = false; /* -0 = 0 */
        return true;
}

static int decimal_cmp(const Decimal *a, const Decimal *b) {
        if (a->neg != b->neg)
                return a->neg ? -1 : 1;
        int sign = a->neg ? -1 : 1, c = 0;
        if (a->ilen != b->ilen) {
                c = a->ilen < b->ilen ? -1 : 1;
        } else if ((c = memcmp(a->ip, b->ip, a->ilen)) == 0) {
                size_t n = a->flen < b->flen ? a->flen : b->flen;
                c = memcmp(a->fp, b->fp, n);
                if (c == 0 && a->flen != b->flen)
                        c = a->flen < b->flen ? -1 : 1;
        }
        return sign * (c < 0 ? -1 : c > 0);
}

static bool number_ok(const char *s, size_t len) {
        Decimal d;
        if (decimal_parse(s, len, &d))
                return true;
        char buf[64], *end;
        if (len == 0 || len >= sizeof(buf))
                return false;
        memcpy(buf, s, len);
        buf[len] = '\0';
        (void)strtod(buf, &end);
        return end > buf && *end == '\0';
}

/* -2: not comparable as numbers */
static int number_cmp(const char *a, size_t al, const char *b, size_t bl) {
        Decimal x, y;
        if (decimal_parse(a, al, &x) && decimal_parse(b, bl, &y))
                return decimal_cmp(&x, &y);
        char ba[64], bb[64], *ea, *eb;
        if (al >= sizeof(ba) || bl >= sizeof(bb))
                return -2;
        memcpy(ba, a, al), ba[al] = '\0';
        memcpy(bb, b, bl), bb[bl] = '\0';
        double da = strtod(ba, &ea), db = strtod(bb, &eb);
        if (ea == ba || *ea || eb == bb || *eb)
                return -2;
        if (isnan(da) || isnan(db)) /* PostgreSQL orders NaN above every number */
                return isnan(da) && isnan(db) ? 0 : isnan(da) ? 1 : -1;
        return da < db ? -1 : da > db;
}

/* 1 true, 0 false, -1 not a boolean's text */
static int truth_of(const char *s, size_t len) {
        static const char *const yes[] = {"t", "true", "1", "y", "yes", "on"};
        static const char *const no[] = {"f", "false", "0", "n", "no", "off"};
        for (size_t i = 0; i < 6; i++) {
                if (strlen(yes[i]) == len && strncasecmp(s, yes[i], len) == 0)
                        return 1;
                if (strlen(no[i]) == len && strncasecmp(s, no[i], len) == 0)
                        return 0;
        }
        return -1;
}

/* Every literal compared with a number column must be a number (or NULL), with a boolean
 * column a truth value. Recursion depth is bounded by the parser's MAX_DEPTH. */
static int check_literals(const RowFilter *f, const Node *n, const Table *t, const int *idx, char *err, size_t errlen) {
        for (int i = 0; i < n->nkids; i++)
                if (check_literals(f, n->kids[i], t, idx, err, errlen) < 0)
                        return -EINVAL;
        if ((n->kind != N_CMP && n->kind != N_IN) || (n->a.col < 0 && (n->kind == N_IN || n->b.col < 0)))
                return 0;
        const Operand *col = n->a.col >= 0 ? &n->a : &n->b;
        Mode m = mode_of(t, idx, &n->a, n->kind == N_CMP ? &n->b : NULL);
        int nl = n->kind == N_IN ? n->nlist : 1;
        for (int i = 0; i < nl; i++) {
                const Operand *l = n->kind == N_IN ? &n->list[i] : n->a.col >= 0 ? &n->b : &n->a;
                if (l->col >= 0 || l->lit == LIT_NULL)
                        continue;
                const char *txt = l->lit == LIT_BOOL ? (l->truth ? "true" : "false") : l->text;
                bool ok = m == MODE_NUMBER ? l->lit != LIT_BOOL && number_ok(txt, strlen(txt))
                          : m == MODE_BOOL ? l->lit == LIT_BOOL || truth_of(txt, strlen(txt)) >= 0
                                           : l->lit != LIT_BOOL;
                if (!ok) {
                        const Column *c = &t->cols[idx[col->col]];
                        snprintf(err, errlen, "column %s of %s.%s (%s) is compared with %s%s%s, which is no %s",
                                 f->cols[col->col], t->schema, t->name, c->type_name ? c->type_name : "?",
                                 l->lit == LIT_TEXT ? "'" : "", txt, l->lit == LIT_TEXT ? "'" : "",
                                 m == MODE_NUMBER ? "number"
                                 : m == MODE_BOOL ? "boolean"
                                                  : "text");
                        return -EINVAL;
                }
        }
        return 0;
}

int rowfilter_bind(const RowFilter *f, const Table *t, int *idx, char *err, size_t errlen) {
        for (int i = 0; i < f->ncols; i++) {
                idx[i] = -1;
                for (int c = 0; c < t->ncols && idx[i] < 0; c++)
                        if (strcmp(t->cols[c].name, f->cols[i]) == 0)
                                idx[i] = c;
                for (int c = 0; c < t->ncols && idx[i] < 0 && !f->quoted[i]; c++)
                        if (strcasecmp(t->cols[c].name, f->cols[i]) == 0)
                                idx[i] = c;
                if (idx[i] < 0) {
                        snprintf(err, errlen, "column %s is not in %s.%s", f->cols[i], t->schema, t->name);
                        return -EINVAL;
                }
        }
        return check_literals(f, f->root, t, idx, err, errlen);
}

/* ---- evaluation ---- */

enum { V_FALSE = 0, V_TRUE = 1, V_UNKNOWN = 2, V_MISSING = 3 };

typedef struct {
        int state; /* 0 value, V_UNKNOWN: NULL, V_MISSING */
        const char *s;
        size_t len;
        bool truth_lit; /* a TRUE/FALSE literal */
        bool truth;
} Got;

static Got fetch(const Operand *o, const int *idx, const Value *img) {
        if (o->col < 0) {
                if (o->lit == LIT_NULL)
                        return (Got){.state = V_UNKNOWN};
                if (o->lit == LIT_BOOL)
                        return (Got){.truth_lit = true,
                                     .truth = o->truth,
                                     .s = o->truth ? "true" : "false",
                                     .len = o->truth ? 4 : 5};
                return (Got){.s = o->text, .len = strlen(o->text)};
        }
        if (!img)
                return (Got){.state = V_MISSING};
        const Value *v = &img[idx[o->col]];
        if (v->kind == VALUE_UNCHANGED)
                return (Got){.state = V_MISSING};
        if (v->kind == VALUE_NULL)
                return (Got){.state = V_UNKNOWN};
        return (Got){.s = v->data, .len = v->len};
}

/* <0, 0, >0, or -2 when the two cannot be compared (a value that is no number in a number
 * column: unknown, as a failed cast would be) */
static int compare(Mode m, const Got *a, const Got *b) {
        if (m == MODE_NUMBER) {
                int c = number_cmp(a->s, a->len, b->s, b->len);
                return c;
        }
        if (m == MODE_BOOL) {
                int x = a->truth_lit ? a->truth : truth_of(a->s, a->len);
                int y = b->truth_lit ? b->truth : truth_of(b->s, b->len);
                if (x < 0 || y < 0)
                        return -2;
                return x - y;
        }
        size_t n = a->len < b->len ? a->len : b->len;
        int c = memcmp(a->s, b->s, n);
        if (c == 0 && a->len != b->len)
                c = a->len < b->len ? -1 : 1;
        return c < 0 ? -1 : c > 0;
}

static bool holds(CmpOp op, int c) {
        switch (op) {
        case CMP_EQ: return c == 0;
        case CMP_NE: return c != 0;
        case CMP_LT: return c < 0;
        case CMP_LE: return c <= 0;
        case CMP_GT: return c > 0;
        case CMP_GE: return c >= 0;
        }
        return false;
}

static int eval(const Node *n, const Table *t, const int *idx, const Value *img) {
        switch (n->kind) {
        case N_OR:
        case N_AND: {
                bool and = n->kind == N_AND;
                int missing = 0, unknown = 0;
                for (int i = 0; i < n->nkids; i++) {
                        int v = eval(n->kids[i], t, idx, img);
                        if (v == (and? V_FALSE : V_TRUE))
                                return v;
                        missing |= v == V_MISSING;
                        unknown |= v == V_UNKNOWN;
                }
                return missing ? V_MISSING : unknown ? V_UNKNOWN : and? V_TRUE : V_FALSE;
        }
        case N_NOT: {
                int v = eval(n->kids[0], t, idx, img);
                return v == V_TRUE ? V_FALSE : v == V_FALSE ? V_TRUE : v;
        }
        case N_ISNULL: {
                Got a = fetch(&n->a, idx, img);
                if (a.state == V_MISSING)
                        return V_MISSING;
                return (a.state == V_UNKNOWN) != n->negated ? V_TRUE : V_FALSE;
        }
        case N_CMP: {
                Got a = fetch(&n->a, idx, img), b = fetch(&n->b, idx, img);
                if (a.state == V_MISSING || b.state == V_MISSING)
                        return V_MISSING;
                if (a.state || b.state)
                        return V_UNKNOWN;
                int c = compare(mode_of(t, idx, &n->a, &n->b), &a, &b);
                return c == -2 ? V_UNKNOWN : holds(n->op, c) ? V_TRUE : V_FALSE;
        }
        case N_IN: {
                Got a = fetch(&n->a, idx, img);
                if (a.state)
                        return a.state;
                bool unknown = false;
                for (int i = 0; i < n->nlist; i++) {
                        Got b = fetch(&n->list[i], idx, img);
                        if (b.state) {
                                unknown = true;
                                continue;
                        }
                        int c = compare(mode_of(t, idx, &n->a, &n->list[i]), &a, &b);
                        if (c == -2)
                                unknown = true;
                        else if (c == 0)
                                return n->negated ? V_FALSE : V_TRUE;
                }
                return unknown ? V_UNKNOWN : n->negated ? V_TRUE : V_FALSE;
        }
        }
        return V_UNKNOWN;
}

int rowfilter_eval(const RowFilter *f, const Table *t, const int *idx, const Value *img) {
        int v = eval(f->root, t, idx, img);
        return v == V_TRUE ? ROWFILTER_YES : v == V_MISSING ? ROWFILTER_MISSING : ROWFILTER_NO;
}

/* ---- as a server's SQL ---- */

typedef struct {
        const RowFilterSqlOps *ops;
        StrBuf b;
        bool unsafe;
        bool oom;
} SqlOut;

static RowFilterColClass sql_operand(SqlOut *o, const Operand *x) {
        RowFilterColClass cls = ROWFILTER_COL_OTHER;
        if (x->col >= 0) {
                const char *id = o->ops->column(o->ops->ud, x->col, &cls);
                if (!id) {
                        o->unsafe = true;
                        return cls;
                }
                strbuf_puts(&o->b, id);
                return cls;
        }
        switch (x->lit) {
        case LIT_NULL: strbuf_puts(&o->b, "NULL"); break;
        case LIT_BOOL: strbuf_puts(&o->b, x->truth ? "true" : "false"); break;
        case LIT_NUMBER:
                if (strpbrk(x->text, "eE"))
                        o->unsafe = true; /* compared as a double here, exactly there */
                strbuf_puts(&o->b, x->text);
                break;
        case LIT_TEXT: {
                char *q = o->ops->literal(o->ops->ud, x->text);
                if (!q)
                        o->oom = true;
                else
                        strbuf_puts(&o->b, q);
                free(q);
                break;
        }
        }
        return cls;
}

/* Whether comparing a with b by op gives on the server what compare() gives here. */
static bool sql_agrees(const Operand *a, RowFilterColClass ca, const Operand *b, RowFilterColClass cb, CmpOp op) {
        bool eq = op == CMP_EQ || op == CMP_NE;
        if (a->col < 0 && b->col < 0)
                return false;
        if (a->col < 0)
                return sql_agrees(b, cb, a, ca, op);
        if (b->col < 0 && b->lit == LIT_NULL)
                return true; /* unknown on both sides */
        if (b->col >= 0 && ca != cb)
                return false;
        switch (ca) {
        case ROWFILTER_COL_NUMBER: return b->col >= 0 || b->lit == LIT_NUMBER;
        case ROWFILTER_COL_TEXT: return eq && (b->col >= 0 || b->lit == LIT_TEXT);
        case ROWFILTER_COL_BOOL: return eq && (b->col >= 0 || b->lit == LIT_BOOL);
        default: return false;
        }
}

static const char *const cmp_sql[] = {" = ", " <> ", " < ", " <= ", " > ", " >= "};

static void sql_node(SqlOut *o, const Node *n) {
        switch (n->kind) {
        case N_OR:
        case N_AND:
                strbuf_puts(&o->b, "(");
                for (int i = 0; i < n->nkids; i++) {
                        if (i)
                                strbuf_puts(&o->b, n->kind == N_AND ? " AND " : " OR ");
                        sql_node(o, n->kids[i]);
                }
                strbuf_puts(&o->b, ")");
                break;
        case N_NOT:
                strbuf_puts(&o->b, "(NOT ");
                sql_node(o, n->kids[0]);
                strbuf_puts(&o->b, ")");
                break;
        case N_ISNULL:
                strbuf_puts(&o->b, "(");
                sql_operand(o, &n->a);
                strbuf_puts(&o->b, n->negated ? " IS NOT NULL)" : " IS NULL)");
                break;
        case N_CMP: {
                strbuf_puts(&o->b, "(");
                RowFilterColClass ca = sql_operand(o, &n->a);
                strbuf_puts(&o->b, cmp_sql[n->op]);
                RowFilterColClass cb = sql_operand(o, &n->b);
                strbuf_puts(&o->b, ")");
                if (!sql_agrees(&n->a, ca, &n->b, cb, n->op))
                        o->unsafe = true;
                break;
        }
        case N_IN: {
                strbuf_puts(&o->b, "(");
                RowFilterColClass ca = sql_operand(o, &n->a);
                strbuf_puts(&o->b, n->negated ? " NOT IN (" : " IN (");
                for (int i = 0; i < n->nlist; i++) {
                        if (i)
                                strbuf_puts(&o->b, ", ");
                        RowFilterColClass cb = sql_operand(o, &n->list[i]);
                        if (!sql_agrees(&n->a, ca, &n->list[i], cb, CMP_EQ))
                                o->unsafe = true;
                }
                strbuf_puts(&o->b, "))");
                break;
        }
        }
}

int rowfilter_sql(const RowFilter *f, const RowFilterSqlOps *ops, char **ret) {
        SqlOut o = {.ops = ops};
        sql_node(&o, f->root);
        if (o.oom) {
                strbuf_free(&o.b);
                return -ENOMEM;
        }
        if (o.unsafe) {
                strbuf_free(&o.b);
                return 0;
        }
        int r = strbuf_finish(&o.b, ret);
        return r < 0 ? r : 1;
}
