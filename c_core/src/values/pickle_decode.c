/*
 * pickle_decode.c - decodes the safe subset of pickle (protocols 0-5) into
 * an mpc_value tree.  Pure: input is one complete message in memory; no
 * I/O, no global state, nothing is imported or called.
 *
 * The machine mirrors CPython's unpickler: an object stack, a separate mark
 * stack (a pop never goes below the latest mark), and a memo keyed by
 * integers.  It is a loop over opcodes, never a recursion, so a hostile
 * pickle cannot exhaust the C stack; tree depth is bounded at insertion.
 * Every length an opcode claims is compared with the bytes actually left
 * before anything is allocated, and every object on the stack or in the
 * memo was produced by at least one input byte, so memory is bounded by the
 * message.  A list or dict may be filled after it went inside another
 * container, which is how a pickle writes a cycle (value.c keeps cycles in
 * groups that are freed as a whole).  Globals are accepted only from a fixed allow-list (the
 * constructors CPython itself writes for sets, frozensets, bytes and
 * bytearrays), and REDUCE only on those, with CPython's argument shapes.
 */
#include "value_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    G_SET = 1,
    G_FROZENSET,
    G_BYTEARRAY,
    G_BYTES,
    G_ENCODE,
};

static const char *const global_names[] = {
    NULL, "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.bytes",
    "_codecs.encode",
};

typedef struct dec {
    const unsigned char *p;
    size_t len, pos;
    size_t op_at; /* offset of the opcode being executed */
    mpc_value **stack;
    size_t sn, scap;
    size_t *marks;
    size_t mn, mcap;
    /* memo: open addressing, int64 keys */
    int64_t *mkeys;
    mpc_value **mvals;
    size_t mcount, mslots;
    uint32_t max_depth;
    mpc_py2str py2_str;
    size_t max_digits;
    mpc_error *err;
} dec;

static const char *op_name(unsigned char op)
{
    switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return NULL;
    }
}

/* Formats "<message> at offset N" into the error and returns MPC_VALUE. */
static mpc_status fail(dec *d, const char *fmt, ...) MPC__PRINTF(2, 3);
static mpc_status fail(dec *d, const char *fmt, ...)
{
    char msg[MPC_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mpc__error(d->err, MPC_VALUE, 0, "%s at offset %zu", msg, d->op_at);
}

static mpc_status nomem(dec *d) { return mpc__error(d->err, MPC_NOMEM, 0, "out of memory"); }

/* (MPC_VALUE spelled out, not fail()'s result: the readers' callers rely on
 * a failure never being MPC_OK, and a variadic call hides that from the
 * static analyzer.) */
static mpc_status truncated(dec *d)
{
    fail(d, "pickle data was truncated");
    return MPC_VALUE;
}

/* Reads n raw bytes. */
static mpc_status take(dec *d, size_t n, const unsigned char **out)
{
    if (d->len - d->pos < n)
        return truncated(d);
    *out = d->p + d->pos;
    d->pos += n;
    return MPC_OK;
}

/* Reads a text argument up to '\n' (excluded from *n). */
static mpc_status take_line(dec *d, const char **out, size_t *n)
{
    const unsigned char *s = d->p + d->pos;
    const unsigned char *nl = memchr(s, '\n', d->len - d->pos);
    if (!nl)
        return truncated(d);
    *out = (const char *)s;
    *n = (size_t)(nl - s);
    d->pos += *n + 1;
    return MPC_OK;
}

static uint64_t le(const unsigned char *b, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

/* --- stack --- */

static size_t fence(const dec *d) { return d->mn ? d->marks[d->mn - 1] : 0; }

/* Pushes v, taking its reference (released on failure). */
static mpc_status push(dec *d, mpc_value *v)
{
    if (!v)
        return nomem(d);
    if (d->sn == d->scap) {
        size_t ncap = d->scap ? d->scap * 2 : 64;
        mpc_value **s = realloc(d->stack, ncap * sizeof *s);
        if (!s) {
            mpc_value_free(v);
            return nomem(d);
        }
        d->stack = s;
        d->scap = ncap;
    }
    d->stack[d->sn++] = v;
    return MPC_OK;
}

static mpc_status underflow(dec *d) { return fail(d, "unpickling stack underflow"); }

/* Requires n objects above the latest mark. */
static mpc_status need(dec *d, size_t n)
{
    if (d->sn - fence(d) < n)
        return underflow(d);
    return MPC_OK;
}

static mpc_status pop_mark(dec *d, size_t *start)
{
    if (d->mn == 0)
        return fail(d, "could not find MARK");
    *start = d->marks[--d->mn];
    return MPC_OK;
}

static void drop_to(dec *d, size_t n)
{
    while (d->sn > n)
        mpc_value_free(d->stack[--d->sn]);
}

static void global_text(const mpc_value *g, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", global_names[g->u.i]);
}

/* Refuses an allowed global used as a plain value (it would be a class or a
 * function object in Python, which mpc_value cannot represent). */
static mpc_status must_be_value(dec *d, const mpc_value *v)
{
    if (v->kind == MPC__V_GLOBAL) {
        char g[64];
        global_text(v, g, sizeof g);
        return fail(d, "refused global '%s' used as a value, not called, by %s", g,
                    op_name(d->p[d->op_at]));
    }
    return MPC_OK;
}

/* --- memo --- */

static uint64_t key_hash(int64_t k)
{
    uint64_t x = (uint64_t)k * 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 29);
}

static long memo_find(const dec *d, int64_t key)
{
    if (!d->mslots)
        return -1;
    size_t mask = d->mslots - 1;
    for (size_t s = key_hash(key) & mask;; s = (s + 1) & mask) {
        if (!d->mvals[s])
            return -1;
        if (d->mkeys[s] == key)
            return (long)s;
    }
}

static mpc_status memo_put(dec *d, int64_t key)
{
    mpc_status st = need(d, 1);
    if (st)
        return st;
    mpc_value *v = d->stack[d->sn - 1];
    long at = memo_find(d, key);
    if (at >= 0) {
        mpc_value_free(d->mvals[at]);
        d->mvals[at] = mpc__value_ref(v);
        return MPC_OK;
    }
    if ((d->mcount + 1) * 2 > d->mslots) {
        size_t ncap = d->mslots ? d->mslots * 2 : 64;
        int64_t *nk = calloc(ncap, sizeof *nk);
        mpc_value **nv = calloc(ncap, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return nomem(d);
        }
        for (size_t i = 0; i < d->mslots; i++) {
            if (!d->mvals[i])
                continue;
            size_t s = key_hash(d->mkeys[i]) & (ncap - 1);
            while (nv[s])
                s = (s + 1) & (ncap - 1);
            nk[s] = d->mkeys[i];
            nv[s] = d->mvals[i];
        }
        free(d->mkeys);
        free(d->mvals);
        d->mkeys = nk;
        d->mvals = nv;
        d->mslots = ncap;
    }
    size_t mask = d->mslots - 1;
    size_t s = key_hash(key) & mask;
    while (d->mvals[s])
        s = (s + 1) & mask;
    d->mkeys[s] = key;
    d->mvals[s] = mpc__value_ref(v);
    d->mcount++;
    return MPC_OK;
}

static mpc_status memo_get(dec *d, int64_t key)
{
    long at = memo_find(d, key);
    if (at < 0)
        return fail(d, "memo key %lld not found", (long long)key);
    return push(d, mpc__value_ref(d->mvals[at]));
}

/* Decimal int64 argument of PUT/GET. */
static mpc_status line_key(dec *d, int64_t *key)
{
    const char *s;
    size_t n;
    mpc_status st = take_line(d, &s, &n);
    if (st)
        return st;
    int neg = n > 0 && s[0] == '-';
    size_t i = neg;
    uint64_t v = 0;
    if (i == n)
        goto invalid;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (uint64_t)INT64_MAX / 10)
            goto invalid;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX)
        goto invalid;
    *key = neg ? -(int64_t)v : (int64_t)v;
    return MPC_OK;
invalid:
    fail(d, "invalid %s argument", op_name(d->p[d->op_at]));
    return MPC_VALUE; /* (spelled out, as in truncated(): *key is unset) */
}

/* --- scalar builders --- */

static mpc_status push_int_text(dec *d, const char *s, size_t n)
{
    int neg = 0;
    size_t i = 0;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    if (i == n)
        return fail(d, "invalid literal for int() in %s", op_name(d->p[d->op_at]));
    for (size_t k = i; k < n; k++)
        if (s[k] < '0' || s[k] > '9')
            return fail(d, "invalid literal for int() in %s", op_name(d->p[d->op_at]));
    int64_t small;
    char *text;
    size_t tlen;
    int r = mpc__bigint_parse(s + i, n - i, neg, 10, d->max_digits, &small, &text, &tlen);
    if (r < 0)
        return fail(d, "integer literal in %s exceeds the limit of %zu digits",
                    op_name(d->p[d->op_at]), d->max_digits);
    if (r == 0)
        return push(d, mpc_value_new_int(small));
    mpc_value *v = mpc__value_alloc(MPC_V_BIGINT);
    if (!v) {
        free(text);
        return nomem(d);
    }
    v->u.s.data = text;
    v->u.s.len = tlen;
    return push(d, v);
}

static mpc_status push_long_bytes(dec *d, const unsigned char *b, size_t n)
{
    int64_t small;
    char *text;
    size_t tlen;
    int r = mpc__bigint_from_le(b, n, d->max_digits, &small, &text, &tlen);
    if (r < 0)
        return fail(d, "integer in %s exceeds the limit of %zu digits", op_name(d->p[d->op_at]),
                    d->max_digits);
    if (r == 0)
        return push(d, mpc_value_new_int(small));
    mpc_value *v = mpc__value_alloc(MPC_V_BIGINT);
    if (!v) {
        free(text);
        return nomem(d);
    }
    v->u.s.data = text;
    v->u.s.len = tlen;
    return push(d, v);
}

static mpc_status push_float_text(dec *d, const char *s, size_t n)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return fail(d, "could not convert string to float in FLOAT");
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        /* Decimal forms and inf/infinity/nan only; strtod would also take hex. */
        if (!strchr("0123456789+-.eEinfatyINFATY", c) || c == '\0')
            return fail(d, "could not convert string to float in FLOAT");
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    double f = strtod(buf, &end);
    if (end != buf + n)
        return fail(d, "could not convert string to float in FLOAT");
    return push(d, mpc_value_new_float(f));
}

static mpc_status push_str(dec *d, const unsigned char *s, size_t n)
{
    if (!mpc__utf8_valid(s, n))
        return fail(d, "invalid UTF-8 in %s", op_name(d->p[d->op_at]));
    return push(d, mpc__value_new_buf(MPC_V_STR, s, n));
}

/* Latin-1 bytes as a str. */
static mpc_value *latin1_str(const unsigned char *s, size_t n)
{
    mpc__buf b = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned char u[4];
        mpc__buf_put(&b, u, mpc__utf8_put(s[i], u));
    }
    if (b.failed)
        return NULL;
    mpc_value *v = mpc__value_new_buf(MPC_V_STR, b.data ? (const char *)b.data : "", b.len);
    mpc__buf_release(&b);
    return v;
}

/* A Python 2 str, per the py2_str option. */
static mpc_status push_py2str(dec *d, const unsigned char *s, size_t n)
{
    switch (d->py2_str) {
    case MPC_PY2STR_BYTES: return push(d, mpc__value_new_buf(MPC_V_BYTES, s, n));
    case MPC_PY2STR_LATIN1: return push(d, latin1_str(s, n));
    default:
        for (size_t i = 0; i < n; i++)
            if (s[i] >= 0x80)
                return fail(d, "non-ASCII byte 0x%02x in a Python 2 str of %s (decode with "
                               "py2_str BYTES or LATIN1)",
                            s[i], op_name(d->p[d->op_at]));
        return push(d, mpc__value_new_buf(MPC_V_STR, s, n));
    }
}

/* Protocol 0 STRING: a quoted, escaped literal. */
static mpc_status push_string_op(dec *d, const char *s, size_t n)
{
    if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0])
        return fail(d, "the STRING opcode argument must be quoted");
    mpc__buf b = {0};
    const char *why;
    size_t at;
    if (mpc__unescape(s + 1, n - 2, 0, 1, &b, &why, &at) < 0) {
        mpc__buf_release(&b);
        return b.failed ? nomem(d) : fail(d, "bad STRING escape: %s", why);
    }
    mpc_status st = push_py2str(d, b.data ? b.data : (const unsigned char *)"", b.len);
    mpc__buf_release(&b);
    return st;
}

/* Protocol 0 UNICODE: raw-unicode-escape (only \uXXXX and \UXXXXXXXX after
 * an odd run of backslashes are escapes; other bytes are Latin-1). */
static mpc_status push_unicode_op(dec *d, const char *s, size_t n)
{
    mpc__buf b = {0};
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        unsigned char u[4];
        if (c != '\\') {
            mpc__buf_put(&b, u, mpc__utf8_put(c, u));
            i++;
            continue;
        }
        size_t run = 0;
        while (i + run < n && s[i + run] == '\\')
            run++;
        int esc = (run & 1) && i + run < n && (s[i + run] == 'u' || s[i + run] == 'U');
        size_t literal = esc ? run - 1 : run;
        for (size_t k = 0; k < literal; k++)
            mpc__buf_byte(&b, '\\');
        i += run;
        if (!esc)
            continue;
        int digits = s[i] == 'u' ? 4 : 8;
        i++;
        if (n - i < (size_t)digits) {
            mpc__buf_release(&b);
            return fail(d, "truncated \\%cXXXX escape in UNICODE", digits == 4 ? 'u' : 'U');
        }
        uint32_t cp = 0;
        for (int k = 0; k < digits; k++, i++) {
            char h = s[i];
            int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                    : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (v < 0) {
                mpc__buf_release(&b);
                return fail(d, "bad \\u escape in UNICODE");
            }
            cp = cp * 16 + (uint32_t)v;
        }
        if (cp > 0x10ffff) {
            mpc__buf_release(&b);
            return fail(d, "\\Uxxxxxxxx out of range in UNICODE");
        }
        mpc__buf_put(&b, u, mpc__utf8_put(cp, u));
    }
    if (b.failed) {
        mpc__buf_release(&b);
        return nomem(d);
    }
    mpc_status st = push(d, mpc__value_new_buf(MPC_V_STR, b.data ? (char *)b.data : "", b.len));
    mpc__buf_release(&b);
    return st;
}

/* --- containers --- */

/* Re-words a failure of the tree's insertion with the opcode and offset. */
static mpc_status insert_failed(dec *d, mpc_status st, const mpc_error *e)
{
    if (st == MPC_NOMEM)
        return nomem(d);
    return fail(d, "%s: %s", op_name(d->p[d->op_at]), e->message);
}

/* Moves stack[from..sn) into container c (sequence, set, or dict pairs). */
static mpc_status fill(dec *d, mpc_value *c, size_t from)
{
    mpc_status st = MPC_OK;
    mpc_error e;
    for (size_t i = from; i < d->sn; i++) {
        if ((st = must_be_value(d, d->stack[i])))
            break;
        if (c->kind == MPC_V_DICT) {
            if (i + 1 >= d->sn) {
                st = fail(d, "odd number of items for %s", op_name(d->p[d->op_at]));
                break;
            }
            if ((st = must_be_value(d, d->stack[i + 1])))
                break;
            st = mpc__value_dict_set(c, d->stack[i], d->stack[i + 1], d->max_depth, &e);
            if (st) {
                st = insert_failed(d, st, &e);
                break;
            }
            d->stack[i] = d->stack[i + 1] = NULL;
            i++;
        } else {
            if (c->kind == MPC_V_SET || c->kind == MPC_V_FROZENSET)
                st = mpc__value_set_add(c, d->stack[i], d->max_depth, &e);
            else
                st = mpc__value_append(c, d->stack[i], d->max_depth, &e);
            if (st) {
                st = insert_failed(d, st, &e);
                break;
            }
            d->stack[i] = NULL;
        }
    }
    /* Items moved are NULL now; release the rest. */
    for (size_t k = from; k < d->sn; k++)
        mpc_value_free(d->stack[k]);
    d->sn = from;
    return st;
}

/* Builds a new container of kind from the items above the latest mark. */
static mpc_status build_from_mark(dec *d, int kind)
{
    size_t start = 0;
    mpc_status st = pop_mark(d, &start);
    if (st)
        return st;
    mpc_value *c = mpc__value_alloc(kind);
    if (!c)
        return nomem(d);
    if ((st = fill(d, c, start))) {
        mpc_value_free(c);
        return st;
    }
    return push(d, c);
}

/* APPENDS / SETITEMS / ADDITEMS: items above the mark go into the object just
 * below it. */
static mpc_status add_from_mark(dec *d, int kind)
{
    size_t start = 0;
    mpc_status st = pop_mark(d, &start);
    if (st)
        return st;
    if (start == 0 || start - 1 < fence(d))
        return underflow(d);
    mpc_value *c = d->stack[start - 1];
    if (c->kind != kind)
        return fail(d, "%s on a %s", op_name(d->p[d->op_at]),
                    c->kind == MPC__V_GLOBAL ? "global" : mpc_vkind_name(mpc_value_kind(c)));
    if (!mpc__value_can_modify(c))
        return fail(d, "refused %s: the %s is already inside another container",
                    op_name(d->p[d->op_at]), mpc_vkind_name(mpc_value_kind(c)));
    return fill(d, c, start);
}

/* APPEND / SETITEM: the last n items go into the object below them. */
static mpc_status add_top(dec *d, int kind, size_t n)
{
    mpc_status st = need(d, n + 1);
    if (st)
        return st;
    mpc_value *c = d->stack[d->sn - n - 1];
    if (c->kind != kind)
        return fail(d, "%s on a %s", op_name(d->p[d->op_at]),
                    c->kind == MPC__V_GLOBAL ? "global" : mpc_vkind_name(mpc_value_kind(c)));
    return fill(d, c, d->sn - n);
}

/* TUPLE1..3 */
static mpc_status tuple_n(dec *d, size_t n)
{
    mpc_status st = need(d, n);
    if (st)
        return st;
    mpc_value *t = mpc__value_alloc(MPC_V_TUPLE);
    if (!t)
        return nomem(d);
    if ((st = fill(d, t, d->sn - n))) {
        mpc_value_free(t);
        return st;
    }
    return push(d, t);
}

/* --- globals and REDUCE --- */

static int global_id(const char *mod, size_t ml, const char *name, size_t nl)
{
#define IS(s, l, lit) ((l) == sizeof(lit) - 1 && memcmp((s), (lit), (l)) == 0)
    if (IS(mod, ml, "builtins") || IS(mod, ml, "__builtin__")) {
        if (IS(name, nl, "set"))
            return G_SET;
        if (IS(name, nl, "frozenset"))
            return G_FROZENSET;
        if (IS(name, nl, "bytearray"))
            return G_BYTEARRAY;
        if (IS(name, nl, "bytes"))
            return G_BYTES;
    }
    if (IS(mod, ml, "_codecs") && IS(name, nl, "encode"))
        return G_ENCODE;
    return 0;
#undef IS
}

static mpc_status push_global(dec *d, const char *mod, size_t ml, const char *name, size_t nl)
{
    int id = global_id(mod, ml, name, nl);
    if (!id) {
        char m[96], n[96];
        mpc__repr_bytes(mod, ml, m, sizeof m);
        mpc__repr_bytes(name, nl, n, sizeof n);
        return fail(d, "refused opcode %s of global '%s.%s'", op_name(d->p[d->op_at]), m, n);
    }
    mpc_value *g = mpc__value_alloc(MPC__V_GLOBAL);
    if (!g)
        return nomem(d);
    g->u.i = id;
    return push(d, g);
}

static int is_str(const mpc_value *v, const char *lit)
{
    return (v->kind == MPC_V_STR || v->kind == MPC_V_BYTES) && v->u.s.len == strlen(lit) &&
           memcmp(v->u.s.data, lit, v->u.s.len) == 0;
}

/* A str whose code points are all below 256, as bytes (Latin-1). */
static mpc_value *str_latin1_bytes(const mpc_value *s, int kind)
{
    const unsigned char *p = (const unsigned char *)s->u.s.data;
    size_t n = s->u.s.len, i = 0, o = 0;
    unsigned char *tmp = malloc(n + 1);
    if (!tmp)
        return NULL;
    while (i < n) {
        uint32_t cp = mpc__utf8_next(p, n, &i);
        if (cp > 0xff) {
            free(tmp);
            return (mpc_value *)-1;
        }
        tmp[o++] = (unsigned char)cp;
    }
    mpc_value *v = mpc__value_new_buf(kind, tmp, o);
    free(tmp);
    return v;
}

static mpc_status reduce(dec *d)
{
    mpc_status st = need(d, 2);
    if (st)
        return st;
    mpc_value *fn = d->stack[d->sn - 2];
    mpc_value *args = d->stack[d->sn - 1];
    if (fn->kind != MPC__V_GLOBAL)
        return fail(d, "refused opcode REDUCE of a %s (not an allowed global)",
                    mpc_vkind_name(mpc_value_kind(fn)));
    char g[64];
    global_text(fn, g, sizeof g);
    mpc_value *res = NULL;
    int bad = args->kind != MPC_V_TUPLE;
    size_t n = bad ? 0 : args->u.c.n;
    mpc_value *a0 = n > 0 ? args->u.c.items[0] : NULL;
    mpc_value *a1 = n > 1 ? args->u.c.items[1] : NULL;
    if (!bad) {
        switch (fn->u.i) {
        case G_SET:
        case G_FROZENSET:
            if (n != 1 || a0->kind != MPC_V_LIST) {
                bad = 1;
                break;
            }
            res = mpc__value_alloc(fn->u.i == G_SET ? MPC_V_SET : MPC_V_FROZENSET);
            if (!res)
                return nomem(d);
            for (size_t i = 0; i < a0->u.c.n; i++) {
                mpc_value *it = mpc__value_ref(a0->u.c.items[i]);
                mpc_error e;
                st = mpc__value_set_add(res, it, d->max_depth, &e);
                if (st) {
                    mpc_value_free(it);
                    mpc_value_free(res);
                    return insert_failed(d, st, &e);
                }
            }
            break;
        case G_BYTES:
            if (n != 0) {
                bad = 1;
                break;
            }
            res = mpc__value_new_buf(MPC_V_BYTES, "", 0);
            break;
        case G_BYTEARRAY:
            if (n == 0) {
                res = mpc__value_new_buf(MPC_V_BYTEARRAY, "", 0);
            } else if (n == 1 && a0->kind == MPC_V_BYTES) {
                res = mpc__value_new_buf(MPC_V_BYTEARRAY, a0->u.s.data, a0->u.s.len);
            } else if (n == 2 && a0->kind == MPC_V_STR && is_str(a1, "latin-1")) {
                res = str_latin1_bytes(a0, MPC_V_BYTEARRAY);
                if (res == (mpc_value *)-1)
                    return fail(d, "REDUCE of global '%s': argument not encodable as latin-1", g);
            } else {
                bad = 1;
            }
            break;
        case G_ENCODE:
            if (n == 2 && a0->kind == MPC_V_STR && a1->kind == MPC_V_STR &&
                is_str(a1, "latin1")) {
                res = str_latin1_bytes(a0, MPC_V_BYTES);
                if (res == (mpc_value *)-1)
                    return fail(d, "REDUCE of global '%s': argument not encodable as latin-1", g);
            } else {
                bad = 1;
            }
            break;
        default: bad = 1; break;
        }
    }
    if (bad)
        return fail(d, "refused opcode REDUCE of global '%s' with arguments CPython does not "
                       "write",
                    g);
    if (!res)
        return nomem(d);
    drop_to(d, d->sn - 2);
    return push(d, res);
}

/* Names the global an INST/OBJ/NEWOBJ would have instantiated, if known. */
static mpc_status refuse(dec *d, unsigned char op)
{
    const char *name = op_name(op);
    if (op == 'i') { /* INST module\nname\n */
        const char *m, *n;
        size_t ml, nl;
        if (take_line(d, &m, &ml) == MPC_OK && take_line(d, &n, &nl) == MPC_OK) {
            char mb[96], nb[96];
            mpc__repr_bytes(m, ml, mb, sizeof mb);
            mpc__repr_bytes(n, nl, nb, sizeof nb);
            return fail(d, "refused opcode INST of global '%s.%s'", mb, nb);
        }
    }
    if ((op == 0x81 || op == 0x92) && d->sn - fence(d) >= (op == 0x81 ? 2u : 3u)) {
        mpc_value *cls = d->stack[d->sn - (op == 0x81 ? 2 : 3)];
        if (cls->kind == MPC__V_GLOBAL) {
            char g[64];
            global_text(cls, g, sizeof g);
            return fail(d, "refused opcode %s of global '%s'", name, g);
        }
    }
    return fail(d, "refused opcode %s", name);
}

/* --- the machine --- */

static mpc_status step(dec *d, int *stopped, mpc_value **result)
{
    const unsigned char *b = NULL;
    const char *s;
    size_t n;
    mpc_status st;
    d->op_at = d->pos;
    unsigned char op = d->p[d->pos++];
    switch (op) {
    case 0x80: /* PROTO */
        if ((st = take(d, 1, &b)))
            return st;
        if (b[0] > 5)
            return fail(d, "unsupported pickle protocol: %d", b[0]);
        return MPC_OK;
    case 0x95: /* FRAME: framing is advisory; only check the claim. */
        if ((st = take(d, 8, &b)))
            return st;
        if (le(b, 8) > d->len - d->pos)
            return truncated(d);
        return MPC_OK;
    case '.': /* STOP */
        if ((st = need(d, 1)) || (st = must_be_value(d, d->stack[d->sn - 1])))
            return st;
        *result = d->stack[--d->sn];
        *stopped = 1;
        return MPC_OK;
    case '(':
        if (d->mn == d->mcap) {
            size_t ncap = d->mcap ? d->mcap * 2 : 32;
            size_t *m = realloc(d->marks, ncap * sizeof *m);
            if (!m)
                return nomem(d);
            d->marks = m;
            d->mcap = ncap;
        }
        d->marks[d->mn++] = d->sn;
        return MPC_OK;
    case '0': /* POP: pops the mark itself if it is on top, as CPython */
        if (d->mn && d->marks[d->mn - 1] == d->sn) {
            d->mn--;
            return MPC_OK;
        }
        if ((st = need(d, 1)))
            return st;
        drop_to(d, d->sn - 1);
        return MPC_OK;
    case '1': { /* POP_MARK */
        size_t start = 0;
        if ((st = pop_mark(d, &start)))
            return st;
        drop_to(d, start);
        return MPC_OK;
    }
    case '2': /* DUP */
        if ((st = need(d, 1)))
            return st;
        return push(d, mpc__value_ref(d->stack[d->sn - 1]));
    case 'N': return push(d, mpc_value_new_none());
    case 0x88: return push(d, mpc_value_new_bool(1));
    case 0x89: return push(d, mpc_value_new_bool(0));
    case 'I':
        if ((st = take_line(d, &s, &n)))
            return st;
        if (n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
            return push(d, mpc_value_new_bool(s[1] == '1'));
        return push_int_text(d, s, n);
    case 'J':
        if ((st = take(d, 4, &b)))
            return st;
        return push(d, mpc_value_new_int((int32_t)(uint32_t)le(b, 4)));
    case 'K':
        if ((st = take(d, 1, &b)))
            return st;
        return push(d, mpc_value_new_int(b[0]));
    case 'M':
        if ((st = take(d, 2, &b)))
            return st;
        return push(d, mpc_value_new_int((int64_t)le(b, 2)));
    case 'L':
        if ((st = take_line(d, &s, &n)))
            return st;
        if (n && s[n - 1] == 'L')
            n--;
        return push_int_text(d, s, n);
    case 0x8a:
    case 0x8b: {
        uint64_t cnt;
        if ((st = take(d, op == 0x8a ? 1 : 4, &b)))
            return st;
        cnt = op == 0x8a ? b[0] : le(b, 4);
        if (op == 0x8b && (cnt & 0x80000000u))
            return fail(d, "LONG pickle has negative byte count");
        if ((st = take(d, cnt, &b)))
            return st;
        return push_long_bytes(d, b, cnt);
    }
    case 'F':
        if ((st = take_line(d, &s, &n)))
            return st;
        return push_float_text(d, s, n);
    case 'G': {
        if ((st = take(d, 8, &b)))
            return st;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = (bits << 8) | b[i];
        double f;
        memcpy(&f, &bits, sizeof f);
        return push(d, mpc_value_new_float(f));
    }
    case 'S':
        if ((st = take_line(d, &s, &n)))
            return st;
        return push_string_op(d, s, n);
    case 'T':
    case 'U': {
        if ((st = take(d, op == 'U' ? 1 : 4, &b)))
            return st;
        uint64_t cnt = op == 'U' ? b[0] : le(b, 4);
        if (op == 'T' && (cnt & 0x80000000u))
            return fail(d, "BINSTRING pickle has negative byte count");
        if ((st = take(d, cnt, &b)))
            return st;
        return push_py2str(d, b, cnt);
    }
    case 'V':
        if ((st = take_line(d, &s, &n)))
            return st;
        return push_unicode_op(d, s, n);
    case 'X':
    case 0x8c:
    case 0x8d:
    case 'B':
    case 'C':
    case 0x8e:
    case 0x96: {
        int w = (op == 0x8c || op == 'C') ? 1 : (op == 'X' || op == 'B') ? 4 : 8;
        if ((st = take(d, (size_t)w, &b)))
            return st;
        uint64_t cnt = le(b, w);
        if (cnt > d->len - d->pos)
            return truncated(d);
        if ((st = take(d, (size_t)cnt, &b)))
            return st;
        if (op == 'X' || op == 0x8c || op == 0x8d)
            return push_str(d, b, cnt);
        return push(d, mpc__value_new_buf(op == 0x96 ? MPC_V_BYTEARRAY : MPC_V_BYTES, b, cnt));
    }
    case ']': return push(d, mpc__value_alloc(MPC_V_LIST));
    case ')': return push(d, mpc__value_alloc(MPC_V_TUPLE));
    case '}': return push(d, mpc__value_alloc(MPC_V_DICT));
    case 0x8f: return push(d, mpc__value_alloc(MPC_V_SET));
    case 'l': return build_from_mark(d, MPC_V_LIST);
    case 't': return build_from_mark(d, MPC_V_TUPLE);
    case 'd': return build_from_mark(d, MPC_V_DICT);
    case 0x91: return build_from_mark(d, MPC_V_FROZENSET);
    case 0x85: return tuple_n(d, 1);
    case 0x86: return tuple_n(d, 2);
    case 0x87: return tuple_n(d, 3);
    case 'a': return add_top(d, MPC_V_LIST, 1);
    case 's': return add_top(d, MPC_V_DICT, 2);
    case 'e': return add_from_mark(d, MPC_V_LIST);
    case 'u': return add_from_mark(d, MPC_V_DICT);
    case 0x90: return add_from_mark(d, MPC_V_SET);
    case 'p': {
        int64_t k;
        if ((st = line_key(d, &k)))
            return st;
        return memo_put(d, k);
    }
    case 'q':
        if ((st = take(d, 1, &b)))
            return st;
        return memo_put(d, b[0]);
    case 'r':
        if ((st = take(d, 4, &b)))
            return st;
        return memo_put(d, (int64_t)le(b, 4));
    case 0x94: return memo_put(d, (int64_t)d->mcount);
    case 'g': {
        int64_t k;
        if ((st = line_key(d, &k)))
            return st;
        return memo_get(d, k);
    }
    case 'h':
        if ((st = take(d, 1, &b)))
            return st;
        return memo_get(d, b[0]);
    case 'j':
        if ((st = take(d, 4, &b)))
            return st;
        return memo_get(d, (int64_t)le(b, 4));
    case 'c': {
        const char *m;
        size_t ml;
        if ((st = take_line(d, &m, &ml)) || (st = take_line(d, &s, &n)))
            return st;
        return push_global(d, m, ml, s, n);
    }
    case 0x93: {
        if ((st = need(d, 2)))
            return st;
        mpc_value *mod = d->stack[d->sn - 2], *name = d->stack[d->sn - 1];
        if (mod->kind != MPC_V_STR || name->kind != MPC_V_STR)
            return fail(d, "STACK_GLOBAL requires str");
        st = push_global(d, mod->u.s.data, mod->u.s.len, name->u.s.data, name->u.s.len);
        if (st)
            return st;
        /* Replace the two strs with the global just pushed. */
        mpc_value *g = d->stack[--d->sn];
        drop_to(d, d->sn - 2);
        d->stack[d->sn++] = g;
        return MPC_OK;
    }
    case 'R': return reduce(d);
    case 'b': case 'i': case 'o': case 0x81: case 0x92: case 'P': case 'Q':
    case 0x82: case 0x83: case 0x84: case 0x97: case 0x98:
        return refuse(d, op);
    default:
        return fail(d, "invalid opcode 0x%02x", op);
    }
}

mpc_status mpc_value_decode(const void *pickle, size_t len, const mpc_decode_options *opts,
                            mpc_value **out, mpc_error *err)
{
    if (out)
        *out = NULL;
    if (!out || (!pickle && len))
        return mpc__error(err, MPC_INVAL, 0, "NULL argument");
    dec d;
    memset(&d, 0, sizeof d);
    d.p = pickle;
    d.len = len;
    d.err = err;
    d.max_depth = MPC_VALUE_DEPTH_DEFAULT;
    d.max_digits = MPC__BIGINT_DIGITS_DEFAULT;
    if (opts) {
        if (opts->max_depth)
            d.max_depth = opts->max_depth > MPC_VALUE_DEPTH_MAX ? MPC_VALUE_DEPTH_MAX
                                                                : opts->max_depth;
        d.py2_str = opts->py2_str;
        if (opts->max_int_digits)
            d.max_digits = opts->max_int_digits;
    }
    mpc_status st = MPC_OK;
    mpc_value *result = NULL;
    int stopped = 0;
    if (len == 0)
        st = mpc__error(err, MPC_VALUE, 0, "empty pickle data (ran out of input)");
    while (!st && !stopped) {
        if (d.pos >= d.len) {
            d.op_at = d.pos;
            st = truncated(&d);
            break;
        }
        st = step(&d, &stopped, &result);
    }
    drop_to(&d, 0);
    free(d.stack);
    free(d.marks);
    for (size_t i = 0; i < d.mslots; i++)
        mpc_value_free(d.mvals[i]);
    free(d.mkeys);
    free(d.mvals);
    if (st) {
        mpc_value_free(result);
        return st;
    }
    *out = result;
    return MPC_OK;
}
