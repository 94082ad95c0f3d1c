/*
 * pyrepr.c - prints a value tree as Python 3's repr() does: the quoting and
 * escaping rules of str and bytes, the shortest round-tripping float text,
 * and the container spellings (tuple "(1,)", "set()", "frozenset({1})",
 * "bytearray(b'')").  Pure; recursion is bounded by the tree's depth limit.
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
 * limit.  Either stops the walk. */
#define REPR_OVER_LIMIT 2

static void repr_value(mpc__buf *b, const mpc_value *v, size_t limit);

static void repr_items(mpc__buf *b, const mpc_value *v, size_t limit)
{
    for (size_t i = 0; i < v->u.c.n && !b->failed; i++) {
        if (i)
            mpc__buf_str(b, ", ");
        repr_value(b, v->u.c.items[i], limit);
    }
}

static void repr_value(mpc__buf *b, const mpc_value *v, size_t limit)
{
    char num[32];
    if (b->failed)
        return; /* out of memory or over the limit: stop walking */
    /* Checked before each node: past this point only one scalar's text (at
     * most ten times its bytes, which the pickle itself held) is added before
     * the walk stops, however often the memo shares a sub-tree. */
    if (b->len > limit) {
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
    case MPC_V_LIST:
        mpc__buf_byte(b, '[');
        repr_items(b, v, limit);
        mpc__buf_byte(b, ']');
        break;
    case MPC_V_TUPLE:
        mpc__buf_byte(b, '(');
        repr_items(b, v, limit);
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
        repr_items(b, v, limit);
        mpc__buf_byte(b, '}');
        break;
    case MPC_V_FROZENSET:
        if (!v->u.c.n) {
            mpc__buf_str(b, "frozenset()");
            break;
        }
        mpc__buf_str(b, "frozenset({");
        repr_items(b, v, limit);
        mpc__buf_str(b, "})");
        break;
    case MPC_V_DICT:
        mpc__buf_byte(b, '{');
        for (size_t i = 0; i < v->u.c.n; i++) {
            if (i)
                mpc__buf_str(b, ", ");
            repr_value(b, v->u.c.items[2 * i], limit);
            mpc__buf_str(b, ": ");
            repr_value(b, v->u.c.items[2 * i + 1], limit);
        }
        mpc__buf_byte(b, '}');
        break;
    default: mpc__buf_str(b, "<invalid>"); break;
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
    repr_value(&b, v, max_len);
    if (!b.failed && b.len > max_len)
        b.failed = REPR_OVER_LIMIT;
    mpc__buf_byte(&b, '\0');
    if (b.failed) {
        int over = b.failed == REPR_OVER_LIMIT;
        mpc__buf_release(&b);
        if (over)
            return mpc__error(err, MPC_VALUE, 0, "the repr is longer than %zu bytes", max_len);
        return mpc__error(err, MPC_NOMEM, 0, "out of memory");
    }
    *out = (char *)b.data;
    if (len)
        *len = b.len - 1;
    return MPC_OK;
}

mpc_status mpc_value_repr(const mpc_value *v, char **out, size_t *len)
{
    return mpc_value_repr_limit(v, SIZE_MAX, out, len, NULL);
}
