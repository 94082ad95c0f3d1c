/*
 * pyparse.c - parses Python literal syntax (what ast.literal_eval accepts
 * for the value kinds, plus the calls repr() prints: set(), frozenset(...),
 * bytearray(...), float('inf')) into a value tree, for `mpconn send
 * --value EXPR`.  Also the backslash-escape decoder shared with the pickle
 * decoder's protocol 0 STRING opcode.  Pure; the recursive descent is
 * bounded by MPC_VALUE_DEPTH_DEFAULT nesting levels.
 */
#include "value_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int mpc__unescape(const char *s, size_t n, int is_str, int raw_ok, mpc__buf *out,
                  const char **why, size_t *at)
{
    size_t i = 0;
    unsigned char u[4];
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c != '\\') {
            if (!is_str && c >= 0x80 && !raw_ok) {
                *why = "bytes can only contain ASCII literal characters";
                *at = i;
                return -1;
            }
            mpc__buf_byte(out, c);
            i++;
            continue;
        }
        if (i + 1 >= n) {
            *why = "trailing \\ in string";
            *at = i;
            return -1;
        }
        char e = s[i + 1];
        size_t start = i;
        i += 2;
        uint32_t cp;
        switch (e) {
        case '\n': continue;
        case '\\': cp = '\\'; break;
        case '\'': cp = '\''; break;
        case '"': cp = '"'; break;
        case 'a': cp = 7; break;
        case 'b': cp = 8; break;
        case 'f': cp = 12; break;
        case 'n': cp = 10; break;
        case 'r': cp = 13; break;
        case 't': cp = 9; break;
        case 'v': cp = 11; break;
        case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7':
            cp = (uint32_t)(e - '0');
            for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++, i++)
                cp = cp * 8 + (uint32_t)(s[i] - '0');
            if (!is_str)
                cp &= 0xff;
            break;
        case 'x':
        case 'u':
        case 'U': {
            if (e != 'x' && !is_str) {
                mpc__buf_byte(out, '\\');
                i = start + 1;
                continue;
            }
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            cp = 0;
            for (int k = 0; k < digits; k++, i++) {
                int h = i < n ? hexval(s[i]) : -1;
                if (h < 0) {
                    *why = e == 'x' ? "truncated \\xXX escape"
                           : e == 'u' ? "truncated \\uXXXX escape"
                                      : "truncated \\UXXXXXXXX escape";
                    *at = start;
                    return -1;
                }
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10ffff) {
                *why = "illegal Unicode character";
                *at = start;
                return -1;
            }
            break;
        }
        case 'N':
            if (is_str) {
                *why = "\\N{...} escapes are not supported";
                *at = start;
                return -1;
            }
            mpc__buf_byte(out, '\\'); /* kept literally in bytes */
            i = start + 1;
            continue;
        default:
            /* Unknown escape: the backslash stays, the character is copied
             * by the next iteration. */
            mpc__buf_byte(out, '\\');
            i = start + 1;
            continue;
        }
        if (is_str)
            mpc__buf_put(out, u, mpc__utf8_put(cp, u));
        else
            mpc__buf_byte(out, (unsigned char)cp);
    }
    return 0;
}

/* --- the parser --- */

typedef struct parser {
    const char *s;
    size_t n, pos;
    unsigned depth;
    mpc_error *err;
} parser;

static mpc_status perr(parser *p, size_t at, const char *why)
{
    return mpc__error(p->err, MPC_VALUE, 0, "invalid syntax at offset %zu: %s", at, why);
}

static mpc_status pnomem(parser *p) { return mpc__error(p->err, MPC_NOMEM, 0, "out of memory"); }

static void skip_ws(parser *p)
{
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
            p->pos++;
        else if (c == '\\' && p->pos + 1 < p->n && p->s[p->pos + 1] == '\n')
            p->pos += 2;
        else
            break;
    }
}

static int peek(parser *p)
{
    skip_ws(p);
    return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1;
}

static int accept(parser *p, char c)
{
    if (peek(p) == (unsigned char)c) {
        p->pos++;
        return 1;
    }
    return 0;
}

static int is_ident(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (c >= '0' && c <= '9');
}

static mpc_status parse_value(parser *p, mpc_value **out);

/* One or more adjacent string literals of the same kind (str or bytes). */
static mpc_status parse_strings(parser *p, mpc_value **out)
{
    mpc__buf b = {0};
    int kind = -1;
    for (;;) {
        int c = peek(p);
        size_t at = p->pos, q = at;
        int raw = 0, isb = 0;
        while (q < p->n && is_ident((unsigned char)p->s[q]) && q - at < 3)
            q++;
        if (q >= p->n || (p->s[q] != '\'' && p->s[q] != '"'))
            break;
        for (size_t k = at; k < q; k++) {
            char pc = p->s[k];
            if (pc == 'r' || pc == 'R') {
                if (raw)
                    goto bad_prefix;
                raw = 1;
            } else if (pc == 'b' || pc == 'B') {
                if (isb)
                    goto bad_prefix;
                isb = 1;
            } else if ((pc == 'u' || pc == 'U') && q - at == 1) {
                /* u'' is a str */
            } else {
                goto bad_prefix;
            }
        }
        (void)c;
        int k2 = isb ? MPC_V_BYTES : MPC_V_STR;
        if (kind >= 0 && kind != k2) {
            mpc__buf_release(&b);
            return perr(p, at, "cannot mix bytes and nonbytes literals");
        }
        kind = k2;
        char quote = p->s[q];
        int triple = q + 2 < p->n && p->s[q + 1] == quote && p->s[q + 2] == quote;
        size_t body = q + (triple ? 3 : 1), i = body, end;
        for (;;) {
            if (i >= p->n) {
                mpc__buf_release(&b);
                return perr(p, at, "unterminated string literal");
            }
            char ch = p->s[i];
            if (ch == '\\') {
                i += 2;
                continue;
            }
            if (ch == '\n' && !triple) {
                mpc__buf_release(&b);
                return perr(p, at, "unterminated string literal");
            }
            if (ch == quote &&
                (!triple || (i + 2 < p->n && p->s[i + 1] == quote && p->s[i + 2] == quote))) {
                end = i;
                break;
            }
            i++;
        }
        if (raw) {
            for (size_t k = body; k < end; k++) {
                if (isb && (unsigned char)p->s[k] >= 0x80) {
                    mpc__buf_release(&b);
                    return perr(p, k, "bytes can only contain ASCII literal characters");
                }
            }
            mpc__buf_put(&b, p->s + body, end - body);
        } else {
            const char *why;
            size_t wat;
            if (mpc__unescape(p->s + body, end - body, !isb, 0, &b, &why, &wat) < 0) {
                mpc__buf_release(&b);
                return perr(p, body + wat, why);
            }
        }
        p->pos = end + (triple ? 3 : 1);
    }
    if (b.failed) {
        mpc__buf_release(&b);
        return pnomem(p);
    }
    *out = mpc__value_new_buf(kind, b.data ? (char *)b.data : "", b.len);
    mpc__buf_release(&b);
    return *out ? MPC_OK : pnomem(p);
bad_prefix:
    mpc__buf_release(&b);
    return perr(p, p->pos, "invalid string prefix");
}

/* Makes room for extra more bytes (and the NUL) in the digit buffer *buf of
 * *cap bytes holding cn; *big is the heap copy once it left the stack.  0,
 * or -1 if out of memory (*big is then freed). */
static int num_room(char **buf, char **big, size_t *cap, size_t cn, size_t extra)
{
    if (cn + extra < *cap)
        return 0;
    size_t ncap = *cap * 2;
    while (cn + extra >= ncap)
        ncap *= 2;
    char *nb = malloc(ncap);
    if (!nb) {
        free(*big);
        *big = NULL;
        return -1;
    }
    memcpy(nb, *buf, cn);
    free(*big);
    *big = *buf = nb;
    *cap = ncap;
    return 0;
}

/* Number with an optional sign already consumed (negative). */
static mpc_status parse_number(parser *p, int negative, mpc_value **out)
{
    size_t at = p->pos, i = at;
    char clean[512];
    size_t cn = 0;
    int base = 10, is_float = 0;
    if (i + 1 < p->n && p->s[i] == '0' &&
        strchr("xXoObB", p->s[i + 1]) && p->s[i + 1] != '\0') {
        char b = p->s[i + 1];
        base = (b == 'x' || b == 'X') ? 16 : (b == 'o' || b == 'O') ? 8 : 2;
        i += 2;
    }
    /* Digits, '_' between digits, and for decimals '.', exponents. */
    char *big = NULL;
    size_t cap = sizeof clean;
    char *buf = clean;
    int prev_digit = base != 10 ? 1 : 0; /* 0x_1 is valid */
    int seen_exp = 0, mantissa_digits = 0;
    while (i < p->n) {
        char c = p->s[i];
        int d = hexval(c);
        int is_digit = d >= 0 && d < base && !(base == 10 && (c == 'e' || c == 'E'));
        if (is_digit) {
            prev_digit = 1;
            mantissa_digits += !seen_exp;
        } else if (c == '_') {
            if (!prev_digit || i + 1 >= p->n || hexval(p->s[i + 1]) < 0 ||
                hexval(p->s[i + 1]) >= base) {
                free(big);
                return perr(p, i, "invalid decimal literal");
            }
            prev_digit = 0;
            i++;
            continue;
        } else if (base == 10 && c == '.' && !is_float && !seen_exp) {
            is_float = 1;
            prev_digit = 0;
        } else if (base == 10 && (c == 'e' || c == 'E') && !seen_exp && mantissa_digits) {
            /* (".e5" is no number: an exponent needs a digit before it.) */
            is_float = seen_exp = 1;
            prev_digit = 0;
            if (num_room(&buf, &big, &cap, cn, 2) < 0)
                return pnomem(p);
            buf[cn++] = c;
            i++;
            if (i < p->n && (p->s[i] == '+' || p->s[i] == '-'))
                buf[cn++] = p->s[i++];
            if (i >= p->n || p->s[i] < '0' || p->s[i] > '9') {
                free(big);
                return perr(p, i, "invalid decimal literal");
            }
            continue;
        } else {
            break;
        }
        if (num_room(&buf, &big, &cap, cn, 1) < 0)
            return pnomem(p);
        buf[cn++] = c;
        i++;
    }
    buf[cn] = '\0';
    if (i < p->n && (is_ident((unsigned char)p->s[i]) || p->s[i] == '.')) {
        free(big);
        return perr(p, i, p->s[i] == 'j' || p->s[i] == 'J' ? "complex numbers are not supported"
                                                             : "invalid number literal");
    }
    p->pos = i;
    if (is_float) {
        if (cn == 1 && buf[0] == '.') {
            free(big);
            return perr(p, at, "invalid syntax");
        }
        double f = strtod(buf, NULL);
        free(big);
        *out = mpc_value_new_float(negative ? -f : f);
        return *out ? MPC_OK : pnomem(p);
    }
    if (cn == 0) {
        free(big);
        return perr(p, at, "invalid number literal");
    }
    if (base == 10 && cn > 1 && buf[0] == '0') {
        for (size_t k = 0; k < cn; k++)
            if (buf[k] != '0') {
                free(big);
                return perr(p, at, "leading zeros in decimal integer literals are not "
                                   "permitted; use an 0o prefix for octal integers");
            }
    }
    int64_t small;
    char *text;
    size_t tl;
    int r = mpc__bigint_parse(buf, cn, negative, base, MPC__BIGINT_DIGITS_DEFAULT, &small, &text,
                              &tl);
    free(big);
    if (r < 0)
        return perr(p, at, "integer literal too large (more than 4300 digits)");
    if (r == 0) {
        *out = mpc_value_new_int(small);
        return *out ? MPC_OK : pnomem(p);
    }
    mpc_value *v = mpc__value_alloc(MPC_V_BIGINT);
    if (!v) {
        free(text);
        return pnomem(p);
    }
    v->u.s.data = text;
    v->u.s.len = tl;
    *out = v;
    return MPC_OK;
}

/* Adds v to container c (append, set add); releases v on failure. */
static mpc_status add_item(parser *p, mpc_value *c, mpc_value *v, size_t at)
{
    mpc_error e;
    mpc_status st = (c->kind == MPC_V_SET || c->kind == MPC_V_FROZENSET)
                        ? mpc__value_set_add(c, v, MPC_VALUE_DEPTH_MAX, &e)
                        : mpc__value_append(c, v, MPC_VALUE_DEPTH_MAX, &e);
    if (st) {
        mpc_value_free(v);
        return st == MPC_NOMEM ? pnomem(p) : mpc__error(p->err, MPC_VALUE, 0, "%s at offset %zu",
                                                        e.message, at);
    }
    return MPC_OK;
}

/* Items up to the closing character into c (list, tuple, set).  If
 * first is not NULL it is the already parsed first item. */
static mpc_status parse_seq(parser *p, mpc_value *c, char close, mpc_value *first)
{
    mpc_status st;
    if (first) {
        if ((st = add_item(p, c, first, p->pos)))
            return st;
        if (!accept(p, ','))
            goto closing;
    }
    while (peek(p) != (unsigned char)close) {
        size_t at = p->pos;
        mpc_value *v;
        if ((st = parse_value(p, &v)))
            return st;
        if ((st = add_item(p, c, v, at)))
            return st;
        if (!accept(p, ','))
            break;
    }
closing:
    if (!accept(p, close)) {
        char why[32];
        snprintf(why, sizeof why, "expected '%c'", close);
        return perr(p, p->pos, why);
    }
    return MPC_OK;
}

static mpc_status parse_dict_rest(parser *p, mpc_value *d, mpc_value *key, size_t key_at)
{
    for (;;) {
        /* key parsed, ':' consumed */
        mpc_value *val;
        mpc_status st = parse_value(p, &val);
        if (st) {
            mpc_value_free(key);
            return st;
        }
        mpc_error e;
        st = mpc__value_dict_set(d, key, val, MPC_VALUE_DEPTH_MAX, &e);
        if (st) {
            mpc_value_free(key);
            mpc_value_free(val);
            return st == MPC_NOMEM ? pnomem(p)
                                   : mpc__error(p->err, MPC_VALUE, 0, "%s at offset %zu",
                                                e.message, key_at);
        }
        if (!accept(p, ',') || peek(p) == '}')
            break;
        key_at = p->pos;
        if ((st = parse_value(p, &key)))
            return st;
        if (!accept(p, ':')) {
            mpc_value_free(key);
            return perr(p, p->pos, "expected ':'");
        }
    }
    if (!accept(p, '}'))
        return perr(p, p->pos, "expected '}'");
    return MPC_OK;
}

static mpc_status parse_brace(parser *p, mpc_value **out)
{
    mpc_status st;
    if (accept(p, '}')) {
        *out = mpc_value_new_dict();
        return *out ? MPC_OK : pnomem(p);
    }
    size_t at = p->pos;
    mpc_value *first;
    if ((st = parse_value(p, &first)))
        return st;
    int is_dict = accept(p, ':');
    mpc_value *c = is_dict ? mpc_value_new_dict() : mpc_value_new_set();
    if (!c) {
        mpc_value_free(first);
        return pnomem(p);
    }
    st = is_dict ? parse_dict_rest(p, c, first, at) : parse_seq(p, c, '}', first);
    if (st) {
        mpc_value_free(c);
        return st;
    }
    *out = c;
    return MPC_OK;
}

static mpc_status parse_paren(parser *p, mpc_value **out)
{
    mpc_status st;
    if (accept(p, ')')) {
        *out = mpc_value_new_tuple();
        return *out ? MPC_OK : pnomem(p);
    }
    mpc_value *first;
    if ((st = parse_value(p, &first)))
        return st;
    if (accept(p, ')')) { /* parenthesized expression */
        *out = first;
        return MPC_OK;
    }
    if (peek(p) != ',') {
        mpc_value_free(first);
        return perr(p, p->pos, "expected ',' or ')'");
    }
    mpc_value *t = mpc_value_new_tuple();
    if (!t) {
        mpc_value_free(first);
        return pnomem(p);
    }
    if ((st = parse_seq(p, t, ')', first))) {
        mpc_value_free(t);
        return st;
    }
    *out = t;
    return MPC_OK;
}

static int word_is(const char *w, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(w, lit, n) == 0;
}

/* set(...), frozenset(...), bytearray(...), float('...'): '(' is next. */
static mpc_status parse_call(parser *p, const char *w, size_t wn, size_t at, mpc_value **out)
{
    mpc_status st;
    if (!accept(p, '('))
        return perr(p, p->pos, "expected '('");
    int is_float = word_is(w, wn, "float"), is_ba = word_is(w, wn, "bytearray");
    int kind = word_is(w, wn, "set") ? MPC_V_SET : MPC_V_FROZENSET;
    if (!is_float && accept(p, ')')) {
        *out = is_ba ? mpc_value_new_bytearray("", 0) : mpc__value_alloc(kind);
        return *out ? MPC_OK : pnomem(p);
    }
    size_t arg_at = p->pos;
    mpc_value *arg;
    if ((st = parse_value(p, &arg)))
        return st;
    accept(p, ',');
    if (!accept(p, ')')) {
        mpc_value_free(arg);
        return perr(p, p->pos, "expected ')'");
    }
    if (is_float) {
        char buf[64];
        double f;
        char *end;
        if (arg->kind != MPC_V_STR || arg->u.s.len == 0 || arg->u.s.len >= sizeof buf ||
            strpbrk(arg->u.s.data, "xXpP") != NULL) {
            mpc_value_free(arg);
            return perr(p, arg_at, "float() takes 'inf', '-inf', 'nan' or a number text");
        }
        memcpy(buf, arg->u.s.data, arg->u.s.len + 1);
        mpc_value_free(arg);
        f = strtod(buf, &end);
        while (*end == ' ')
            end++;
        if (end == buf || *end) {
            return perr(p, arg_at, "could not convert string to float");
        }
        *out = mpc_value_new_float(f);
        return *out ? MPC_OK : pnomem(p);
    }
    if (is_ba) {
        if (arg->kind != MPC_V_BYTES) {
            mpc_value_free(arg);
            return perr(p, arg_at, "bytearray() takes a bytes literal");
        }
        arg->kind = MPC_V_BYTEARRAY;
        arg->hash_state = 0;
        *out = arg;
        return MPC_OK;
    }
    if (arg->kind != MPC_V_LIST && arg->kind != MPC_V_TUPLE && arg->kind != MPC_V_SET &&
        arg->kind != MPC_V_FROZENSET) {
        mpc_value_free(arg);
        return perr(p, arg_at, "set()/frozenset() take a list, tuple or set literal");
    }
    mpc_value *s = mpc__value_alloc(kind);
    if (!s) {
        mpc_value_free(arg);
        return pnomem(p);
    }
    for (size_t i = 0; i < arg->u.c.n; i++) {
        if ((st = add_item(p, s, mpc__value_ref(arg->u.c.items[i]), at))) {
            mpc_value_free(s);
            mpc_value_free(arg);
            return st;
        }
    }
    mpc_value_free(arg);
    *out = s;
    return MPC_OK;
}

static mpc_status parse_value(parser *p, mpc_value **out)
{
    *out = NULL;
    int c = peek(p);
    size_t at = p->pos;
    if (c < 0)
        return perr(p, at, "unexpected end of input");
    if (c == '[' || c == '(' || c == '{') {
        if (++p->depth > MPC_VALUE_DEPTH_DEFAULT)
            return mpc__error(p->err, MPC_VALUE, 0, "nesting deeper than %d at offset %zu",
                              MPC_VALUE_DEPTH_DEFAULT, at);
        p->pos++;
        mpc_status st;
        if (c == '[') {
            mpc_value *l = mpc_value_new_list();
            if (!l)
                return pnomem(p);
            if ((st = parse_seq(p, l, ']', NULL))) {
                mpc_value_free(l);
                return st;
            }
            *out = l;
        } else if (c == '(') {
            st = parse_paren(p, out);
        } else {
            st = parse_brace(p, out);
        }
        p->depth--;
        return st;
    }
    if (c == '-' || c == '+') {
        p->pos++;
        int d = peek(p);
        if ((d >= '0' && d <= '9') || d == '.')
            return parse_number(p, c == '-', out);
        if (d == 'i' || d == 'n') {
            size_t q = p->pos;
            while (q < p->n && is_ident((unsigned char)p->s[q]))
                q++;
            if (word_is(p->s + p->pos, q - p->pos, "inf") ||
                word_is(p->s + p->pos, q - p->pos, "nan")) {
                double f = p->s[p->pos] == 'i' ? INFINITY : NAN;
                p->pos = q;
                *out = mpc_value_new_float(c == '-' ? -f : f);
                return *out ? MPC_OK : pnomem(p);
            }
        }
        return perr(p, p->pos, "expected a number after the sign");
    }
    if ((c >= '0' && c <= '9') || c == '.')
        return parse_number(p, 0, out);
    if (c == '\'' || c == '"')
        return parse_strings(p, out);
    if (is_ident(c)) {
        size_t q = p->pos;
        while (q < p->n && is_ident((unsigned char)p->s[q]))
            q++;
        if (q < p->n && (p->s[q] == '\'' || p->s[q] == '"'))
            return parse_strings(p, out);
        const char *w = p->s + p->pos;
        size_t wn = q - p->pos;
        p->pos = q;
        if (word_is(w, wn, "None"))
            *out = mpc_value_new_none();
        else if (word_is(w, wn, "True"))
            *out = mpc_value_new_bool(1);
        else if (word_is(w, wn, "False"))
            *out = mpc_value_new_bool(0);
        else if (word_is(w, wn, "inf"))
            *out = mpc_value_new_float(INFINITY);
        else if (word_is(w, wn, "nan"))
            *out = mpc_value_new_float(NAN);
        else if (word_is(w, wn, "set") || word_is(w, wn, "frozenset") ||
                 word_is(w, wn, "bytearray") || word_is(w, wn, "float"))
            return parse_call(p, w, wn, at, out);
        else
            return perr(p, at, "unknown name (only None, True, False, inf, nan, set, frozenset, "
                               "bytearray and float are allowed)");
        return *out ? MPC_OK : pnomem(p);
    }
    return perr(p, at, "unexpected character");
}

mpc_status mpc_value_parse(const char *text, size_t len, mpc_value **out, mpc_error *err)
{
    if (out)
        *out = NULL;
    if (!out || (!text && len))
        return mpc__error(err, MPC_INVAL, 0, "NULL argument");
    if (!mpc__utf8_valid((const unsigned char *)text, len))
        return mpc__error(err, MPC_VALUE, 0, "the text is not valid UTF-8");
    parser p = {text, len, 0, 0, err};
    mpc_value *v;
    mpc_status st = parse_value(&p, &v);
    if (st)
        return st;
    if (peek(&p) >= 0) {
        mpc_value_free(v);
        return perr(&p, p.pos, "unexpected text after the value");
    }
    *out = v;
    return MPC_OK;
}
