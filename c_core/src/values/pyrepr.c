/*
 * pyrepr.c - prints a value tree as Python 3's repr() does: the quoting and
 * escaping rules of str and bytes, the shortest round-tripping float text,
 * and the container spellings (tuple "(1,)", "set()", "frozenset({1})",
 * "bytearray(b'')") and Python's "[...]" for a container met again on its
 * own path (a cycle).  Pure; recursion is bounded by MPC_VALUE_DEPTH_MAX.
 *
 * Floats are formatted with the C library (assumed to round correctly, as
 * glibc does, and to run in the "C" numeric locale, which this library never
 * changes): the first precision from 1 to 17 digits whose text reads back as
 * the same double gives the digits; Python's rules then place the decimal
 * point (positional for exponents -4 <= e < 16, else "1e+16" style).
 */
#include "value_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char hexd[] = "0123456789abcdef";

static void put_hex(mpc__buf *b, char kind, uint32_t cp, int digits)
{
    char t[12];
    t[0] = '\\';
    t[1] = kind;
    for (int i = 0; i < digits; i++)
        t[2 + i] = hexd[(cp >> (4 * (digits - 1 - i))) & 15];
    mpc__buf_put(b, t, (size_t)digits + 2);
}

static void repr_str(mpc__buf *b, const unsigned char *s, size_t n)
{
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    unsigned char q = has_sq && !has_dq ? '"' : '\'';
    size_t i = 0;
    mpc__buf_byte(b, q);
    while (i < n) {
        size_t at = i;
        uint32_t cp = mpc__utf8_next(s, n, &i);
        if (cp == q || cp == '\\') {
            mpc__buf_byte(b, '\\');
            mpc__buf_byte(b, (unsigned char)cp);
        } else if (cp == '\t') {
            mpc__buf_str(b, "\\t");
        } else if (cp == '\n') {
            mpc__buf_str(b, "\\n");
        } else if (cp == '\r') {
            mpc__buf_str(b, "\\r");
        } else if (cp < 0x20 || cp == 0x7f) {
            put_hex(b, 'x', cp, 2);
        } else if (cp < 0x7f) {
            mpc__buf_byte(b, (unsigned char)cp);
        } else if (mpc__unicode_printable(cp)) {
            mpc__buf_put(b, s + at, i - at);
        } else if (cp <= 0xff) {
            put_hex(b, 'x', cp, 2);
        } else if (cp <= 0xffff) {
            put_hex(b, 'u', cp, 4);
        } else {
            put_hex(b, 'U', cp, 8);
        }
    }
    mpc__buf_byte(b, q);
}

/* bytearray's repr differs from bytes' in one point: it escapes a single
 * quote even inside double quotes (bytearray(b"\'")), as CPython does. */
static void repr_bytes(mpc__buf *b, const unsigned char *s, size_t n, int is_bytearray)
{
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    unsigned char q = has_sq && !has_dq ? '"' : '\'';
    mpc__buf_byte(b, 'b');
    mpc__buf_byte(b, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == q || c == '\\' || (is_bytearray && c == '\'')) {
            mpc__buf_byte(b, '\\');
            mpc__buf_byte(b, c);
        } else if (c == '\t') {
            mpc__buf_str(b, "\\t");
        } else if (c == '\n') {
            mpc__buf_str(b, "\\n");
        } else if (c == '\r') {
            mpc__buf_str(b, "\\r");
        } else if (c < 0x20 || c >= 0x7f) {
            put_hex(b, 'x', c, 2);
        } else {
            mpc__buf_byte(b, c);
        }
    }
    mpc__buf_byte(b, q);
}

static void repr_float(mpc__buf *b, double f)
{
    if (isnan(f)) {
        mpc__buf_str(b, "nan");
        return;
    }
    if (isinf(f)) {
        mpc__buf_str(b, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        mpc__buf_str(b, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    /* Shortest digits: for each length, the correctly rounded candidate or
     * its neighbours in the last digit (the shortest string that reads back
     * is not always the rounded one); among those that read back, the one
     * closest to f, as Python's repr. */
    char digits[24];
    int nd = 0, neg = signbit(f) != 0, exp10 = 0;
    double af = fabs(f);
    for (int p = 1; p <= 17 && nd == 0; p++) {
        char e[40];
        snprintf(e, sizeof e, "%.*e", p - 1, af);
        unsigned long long m = 0;
        const char *c = e;
        for (; *c && *c != 'e'; c++)
            if (*c >= '0' && *c <= '9')
                m = m * 10 + (unsigned long long)(*c - '0');
        int ex = atoi(c + 1) - (p - 1); /* value = m * 10^ex */
        unsigned long long best = 0;
        double best_err = 0;
        for (int k = 0; k < 3; k++) {
            unsigned long long cand = k == 0 ? m : k == 1 ? m + 1 : m - 1;
            if (cand == 0)
                continue;
            char t[48];
            snprintf(t, sizeof t, "%llue%d", cand, ex);
            double back = strtod(t, NULL);
            if (back != af)
                continue;
            /* distance from the exact value, compared in long double */
            long double err = fabsl(strtold(t, NULL) - (long double)af);
            if (!best || err < best_err) {
                best = cand;
                best_err = (double)err;
            }
            if (k == 0)
                break; /* the rounded candidate is the closest */
        }
        if (best) {
            char t[24];
            int len = snprintf(t, sizeof t, "%llu", best);
            memcpy(digits, t, (size_t)len);
            nd = len;
            exp10 = ex + len - 1;
        }
    }
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int decpt = exp10 + 1;
    char out[64];
    int o = 0;
    if (neg)
        out[o++] = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -decpt; i++)
                out[o++] = '0';
            memcpy(out + o, digits, (size_t)nd);
            o += nd;
        } else if (decpt >= nd) {
            memcpy(out + o, digits, (size_t)nd);
            o += nd;
            for (int i = nd; i < decpt; i++)
                out[o++] = '0';
            out[o++] = '.';
            out[o++] = '0';
        } else {
            memcpy(out + o, digits, (size_t)decpt);
            o += decpt;
            out[o++] = '.';
            memcpy(out + o, digits + decpt, (size_t)(nd - decpt));
            o += nd - decpt;
        }
        out[o] = '\0';
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, (size_t)(nd - 1));
            o += nd - 1;
        }
        snprintf(out + o, sizeof out - (size_t)o, "e%c%02d", exp10 < 0 ? '-' : '+',
                 exp10 < 0 ? -exp10 : exp10);
    }
    mpc__buf_str(b, out);
}

/* Failure codes kept in mpc__buf.failed by this file: 1 is the buffer's own
 * "out of memory"; REPR_OVER_LIMIT means the text passed the caller's
 * limit; REPR_TOO_DEEP a path longer than MPC_VALUE_DEPTH_MAX (only a
 * cycle can make one: Python raises RecursionError there).  Each stops the
 * walk. */
#define REPR_OVER_LIMIT 2
#define REPR_TOO_DEEP 3

/* The containers of a cycle's group on the current path, which print as
 * "[...]", "{...}" and "(...)" when met again, as Python's repr does: an
 * open-addressing set used as a stack (the newest entry is always removed
 * first, so clearing its slot restores the table).  Allocated for the
 * first group member met; its size is twice the longest path. */
#define PATH_SLOTS 8192

typedef struct rctx {
    mpc__buf *b;
    size_t limit;
    unsigned depth;
    const mpc_value **path;
} rctx;

static size_t path_slot(const rctx *r, const mpc_value *v)
{
    uint64_t h = (uint64_t)(uintptr_t)v * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 40) & (PATH_SLOTS - 1);
    while (r->path[i] && r->path[i] != v)
        i = (i + 1) & (PATH_SLOTS - 1);
    return i;
}

static void repr_value(rctx *r, const mpc_value *v);

static void repr_items(rctx *r, const mpc_value *v)
{
    for (size_t i = 0; i < v->u.c.n && !r->b->failed; i++) {
        if (i)
            mpc__buf_str(r->b, ", ");
        repr_value(r, v->u.c.items[i]);
    }
}

static void repr_container(rctx *r, const mpc_value *v)
{
    mpc__buf *b = r->b;
    switch (v->kind) {
    case MPC_V_LIST:
        mpc__buf_byte(b, '[');
        repr_items(r, v);
        mpc__buf_byte(b, ']');
        break;
    case MPC_V_TUPLE:
        mpc__buf_byte(b, '(');
        repr_items(r, v);
        if (v->u.c.n == 1)
            mpc__buf_byte(b, ',');
        mpc__buf_byte(b, ')');
        break;
    case MPC_V_SET:
        if (!v->u.c.n) {
            mpc__buf_str(b, "set()");
            break;
        }
        mpc__buf_byte(b, '{');
        repr_items(r, v);
        mpc__buf_byte(b, '}');
        break;
    case MPC_V_FROZENSET:
        if (!v->u.c.n) {
            mpc__buf_str(b, "frozenset()");
            break;
        }
        mpc__buf_str(b, "frozenset({");
        repr_items(r, v);
        mpc__buf_str(b, "})");
        break;
    case MPC_V_DICT:
        mpc__buf_byte(b, '{');
        for (size_t i = 0; i < v->u.c.n && !b->failed; i++) {
            if (i)
                mpc__buf_str(b, ", ");
            repr_value(r, v->u.c.items[2 * i]);
            mpc__buf_str(b, ": ");
            repr_value(r, v->u.c.items[2 * i + 1]);
        }
        mpc__buf_byte(b, '}');
        break;
    default: mpc__buf_str(b, "<invalid>"); break;
    }
}

/* A container: "[...]" if it is already on the path, else its text. */
static void repr_nested(rctx *r, const mpc_value *v)
{
    size_t slot = 0;
    if (r->depth >= MPC_VALUE_DEPTH_MAX) {
        r->b->failed = REPR_TOO_DEEP;
        return;
    }
    if (v->grp && v->u.c.n) {
        if (!r->path && !(r->path = calloc(PATH_SLOTS, sizeof *r->path))) {
            r->b->failed = 1;
            return;
        }
        slot = path_slot(r, v);
        if (r->path[slot]) {
            mpc__buf_str(r->b, v->kind == MPC_V_LIST ? "[...]"
                               : v->kind == MPC_V_DICT ? "{...}" : "(...)");
            return;
        }
        r->path[slot] = v;
    }
    r->depth++;
    repr_container(r, v);
    r->depth--;
    if (v->grp && v->u.c.n)
        r->path[slot] = NULL;
}

static void repr_value(rctx *r, const mpc_value *v)
{
    mpc__buf *b = r->b;
    char num[32];
    if (b->failed)
        return; /* out of memory or over the limit: stop walking */
    /* Checked before each node: past this point only one scalar's text (at
     * most ten times its bytes, which the pickle itself held) is added before
     * the walk stops, however often the memo shares a sub-tree. */
    if (b->len > r->limit) {
        b->failed = REPR_OVER_LIMIT;
        return;
    }
    switch (v->kind) {
    case MPC_V_NONE: mpc__buf_str(b, "None"); break;
    case MPC_V_BOOL: mpc__buf_str(b, v->u.i ? "True" : "False"); break;
    case MPC_V_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->u.i);
        mpc__buf_str(b, num);
        break;
    case MPC_V_BIGINT: mpc__buf_put(b, v->u.s.data, v->u.s.len); break;
    case MPC_V_FLOAT: repr_float(b, v->u.f); break;
    case MPC_V_STR: repr_str(b, (const unsigned char *)v->u.s.data, v->u.s.len); break;
    case MPC_V_BYTES: repr_bytes(b, (const unsigned char *)v->u.s.data, v->u.s.len, 0); break;
    case MPC_V_BYTEARRAY:
        mpc__buf_str(b, "bytearray(");
        repr_bytes(b, (const unsigned char *)v->u.s.data, v->u.s.len, 1);
        mpc__buf_byte(b, ')');
        break;
    default: repr_nested(r, v); break;
    }
}

mpc_status mpc_value_repr_limit(const mpc_value *v, size_t max_len, char **out, size_t *len,
                                mpc_error *err)
{
    if (out)
        *out = NULL;
    if (len)
        *len = 0;
    if (!v || !out)
        return mpc__error(err, MPC_INVAL, 0, "value and out must not be NULL");
    mpc__buf b = {0};
    rctx r = {&b, max_len, 0, NULL};
    repr_value(&r, v);
    free(r.path);
    if (!b.failed && b.len > max_len)
        b.failed = REPR_OVER_LIMIT;
    mpc__buf_byte(&b, '\0');
    if (b.failed) {
        int why = b.failed;
        mpc__buf_release(&b);
        if (why == REPR_OVER_LIMIT)
            return mpc__error(err, MPC_VALUE, 0, "the repr is longer than %zu bytes", max_len);
        if (why == REPR_TOO_DEEP)
            return mpc__error(err, MPC_VALUE, 0, "nesting deeper than %d levels through a cycle",
                              MPC_VALUE_DEPTH_MAX);
        return mpc__error(err, MPC_NOMEM, 0, "out of memory");
    }
    *out = (char *)b.data;
    if (len)
        *len = b.len - 1;
    return MPC_OK;
}

mpc_status mpc_value_repr(const mpc_value *v, char **out, size_t *len, mpc_error *err)
{
    return mpc_value_repr_limit(v, SIZE_MAX, out, len, err);
}
