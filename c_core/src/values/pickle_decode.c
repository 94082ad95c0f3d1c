/*
 * pickle_decode.c - decodes the safe subset of pickle (protocols 0-5).
 * Pure: input is one complete message in memory; no I/O, no global state,
 * nothing is imported or called.
 *
 * The machine mirrors CPython's unpickler: an object stack, a separate mark
 * stack (a pop never goes below the latest mark), and a memo keyed by
 * integers.  It is a loop over opcodes, never a recursion, so a hostile
 * pickle cannot exhaust the C stack.  Every length an opcode claims is
 * compared with the bytes actually left before anything is allocated, and
 * every object on the stack or in the memo was produced by at least one
 * input byte, so memory is bounded by the message.  Globals are accepted
 * only from a fixed allow-list (the constructors CPython itself writes for
 * sets, frozensets, bytes and bytearrays), and REDUCE only on those, with
 * CPython's argument shapes.
 *
 * The values are made by a builder (mpc_value_builder, mpconn.h section
 * 4a): the decoder holds the builder's handles, with the kind and nesting
 * height of each, on its stack and in its memo, and tells the builder what
 * to make and fill; everything it decides (opcodes, the allow-list, the
 * shapes, lengths, the memo, errors with opcode and offset) stays here.
 * mpc_value_decode() is the decoder with the builder of mpc_value trees
 * (at the end of this file), which keeps its own nesting bound and groups
 * the containers of a cycle (value.c); a binding passes a builder of its
 * own (the Python extension builds Python objects).  An allowed global
 * lives only on the decoder's stack and memo, never in a builder's value.
 */
#include "value_internal.h"

#include <math.h>
#include <stddef.h>
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

/* The kind (an mpc_vkind, or MPC__V_GLOBAL) and nesting height of a stack
 * or memo entry, in one word: the height above 8 bits of kind, so that the
 * larger of two words has the larger height. */
#define KH(kind, height) ((uint32_t)(height) << 8 | (uint32_t)(kind))
#define KH_KIND(x) ((int)((x) & 0xffu))
#define KH_HEIGHT(x) ((uint32_t)(x) >> 8)

/* The height of an allowed global: above every real height, so that the
 * tallest of a container's items also says whether a global is among them
 * (only fill() reads a global's height).  Real heights stay below it: the
 * decoder refuses nesting deeper than MPC_VALUE_DEPTH_MAX, and where the
 * builder bounds the nesting instead, fill() clamps the heights it
 * computes (which then serve no check). */
#define GLOBAL_HEIGHT 0x800000u

/* A memo entry: a handle (for MPC__V_GLOBAL, the global's id) and its KH()
 * when stored; a KH() is never 0 (heights are at least 1), so a kh of 0 is
 * an entry not in use. */
typedef struct ment {
    void *h;
    uint32_t kh;
} ment;

/* Where an entry of the memo is: its handle and its kh. */
typedef struct mslot {
    void **h;
    uint32_t *kh;
} mslot;

/* Inline storage for small pickles (no allocation at all for most
 * messages): stack entries, marks, memo keys. */
#define DEC_STACK0 64
#define DEC_MARKS0 16
#define DEC_MEMO0 32

typedef struct dec {
    const unsigned char *p;
    size_t len, pos;
    size_t op_at; /* offset of the opcode being executed */
    const mpc_value_builder *b;
    void *ctx;
    /* the stack, as two parallel arrays: handles (contiguous, so the
     * items of a container go to the builder in one call) and KH()s */
    void **sh;
    uint32_t *skh;
    size_t sn, scap;
    size_t *marks;
    size_t mn, mcap;
    /* memo: a direct array for the dense small keys CPython writes (0, 1,
     * 2 ...), open addressing for any other int64 key.  The direct array is
     * two parallel arrays (handles, khs: 12 bytes a key, as small as the
     * memo of CPython's unpickler, whose large blocks the allocator keeps
     * rather than mapping and unmapping them for each message);
     * mdkh[0..mdhi) are initialised, the rest is not yet. */
    void **mdh;
    uint32_t *mdkh;
    size_t mdcap, mdhi;
    int64_t *mkeys;
    ment *mv;
    size_t mslots, mhn;
    size_t mcount; /* distinct keys (MEMOIZE's next key) */
    uint32_t max_depth;
    int check_depth; /* the builder does not bound nesting: the decoder does */
    mpc_py2str py2_str;
    int proto; /* of the last PROTO opcode (0 before any) */
    mpc_error *err;
    /* not cleared on entry: */
    mpc_error berr; /* a builder call's failure */
    void *sh0[DEC_STACK0];
    uint32_t skh0[DEC_STACK0];
    size_t marks0[DEC_MARKS0];
    void *mdh0[DEC_MEMO0];
    uint32_t mdkh0[DEC_MEMO0];
} dec;

/* Grows an array that starts in the inline storage inl (n elements of
 * size sz) to ncap elements.  NULL on out of memory (the old one stays). */
static void *grow_array(void *a, const void *inl, size_t n, size_t ncap, size_t sz)
{
    if (a != inl)
        return realloc(a, ncap * sz);
    void *b = malloc(ncap * sz);
    if (b && n)
        memcpy(b, a, n * sz);
    return b;
}

static void free_array(void *a, const void *inl)
{
    if (a != inl)
        free(a);
}

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

/* A builder call failed (d->berr): out of memory, or its message after the
 * opcode ("SETITEMS: unhashable type: 'list' at offset 9"). */
static mpc_status builder_failed(dec *d)
{
    if (d->berr.status == MPC_NOMEM)
        return nomem(d);
    fail(d, "%s: %s", op_name(d->p[d->op_at]), d->berr.message[0] ? d->berr.message : "failed");
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

/* --- handles --- */

static inline void h_ref(dec *d, void *h, int kind)
{
    if (kind != MPC__V_GLOBAL)
        d->b->ref(d->ctx, h);
}

static inline void h_release(dec *d, void *h, int kind)
{
    if (kind != MPC__V_GLOBAL)
        d->b->release(d->ctx, h);
}

/* --- stack --- */

static size_t fence(const dec *d) { return d->mn ? d->marks[d->mn - 1] : 0; }

/* Doubles the stack; 0, or -1 on out of memory (the stack unchanged). */
static int grow_stack(dec *d)
{
    size_t ncap = d->scap * 2;
    void **sh = grow_array(d->sh, d->sh0, d->sn, ncap, sizeof *sh);
    uint32_t *skh = grow_array(d->skh, d->skh0, d->sn, ncap, sizeof *skh);
    if (sh)
        d->sh = sh;
    if (skh)
        d->skh = skh;
    if (!sh || !skh)
        return -1;
    d->scap = ncap;
    return 0;
}

/* Pushes h, not NULL (a reference the stack takes; released on failure). */
static inline mpc_status push_ok(dec *d, void *h, int kind, uint32_t height)
{
    if (d->sn == d->scap && grow_stack(d) < 0) {
        h_release(d, h, kind);
        return nomem(d);
    }
    d->sh[d->sn] = h;
    d->skh[d->sn] = KH(kind, height);
    d->sn++;
    return MPC_OK;
}

/* push_ok() of a builder call's result: NULL is a call that failed. */
static inline mpc_status push_h(dec *d, void *h, int kind, uint32_t height)
{
    if (!h)
        return builder_failed(d);
    return push_ok(d, h, kind, height);
}

/* A new scalar of the builder. */
static inline mpc_status push_scalar(dec *d, mpc_vkind kind, int64_t i, double f)
{
    return push_h(d, d->b->scalar(d->ctx, kind, i, f, &d->berr), kind, 1);
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
    while (d->sn > n) {
        d->sn--;
        h_release(d, d->sh[d->sn], KH_KIND(d->skh[d->sn]));
    }
}

static const char *global_text(const void *h) { return global_names[(uintptr_t)h]; }

/* The kind name of a stack entry for messages. */
static const char *kind_text(int kind)
{
    return kind == MPC__V_GLOBAL ? "global" : mpc_vkind_name((mpc_vkind)kind);
}

/* Refuses an allowed global used as a plain value (it would be a class or a
 * function object in Python, which a value cannot be). */
static mpc_status global_as_value(dec *d, const void *h)
{
    return fail(d, "refused global '%s' used as a value, not called, by %s", global_text(h),
                op_name(d->p[d->op_at]));
}

/* --- memo --- */

static uint64_t key_hash(int64_t k)
{
    uint64_t x = (uint64_t)k * 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 29);
}

/* Finds key: 1 (*m set), or 0. */
static int memo_find(dec *d, int64_t key, mslot *m)
{
    if (key >= 0 && (uint64_t)key < d->mdhi && d->mdkh[key]) {
        m->h = &d->mdh[key];
        m->kh = &d->mdkh[key];
        return 1;
    }
    if (!d->mslots)
        return 0;
    size_t mask = d->mslots - 1;
    for (size_t s = key_hash(key) & mask;; s = (s + 1) & mask) {
        if (!d->mv[s].kh)
            return 0;
        if (d->mkeys[s] == key) {
            m->h = &d->mv[s].h;
            m->kh = &d->mv[s].kh;
            return 1;
        }
    }
}

/* A free entry for a key not in the memo (*m set): 0, or -1 (out of
 * memory).  Dense keys go to the direct array, which grows to at most about
 * twice the number of keys stored (so a hostile key costs no memory). */
static int memo_new(dec *d, int64_t key, mslot *m)
{
    if (key >= 0 && (uint64_t)key >= d->mdcap) {
        size_t nc = d->mdcap;
        while (nc <= (uint64_t)key && nc <= 2 * d->mcount + 64)
            nc *= 2;
        if (nc > (uint64_t)key && nc <= 2 * d->mcount + 128) {
            void **mdh = grow_array(d->mdh, d->mdh0, d->mdhi, nc, sizeof *mdh);
            uint32_t *mdkh = grow_array(d->mdkh, d->mdkh0, d->mdhi, nc, sizeof *mdkh);
            if (mdh)
                d->mdh = mdh;
            if (mdkh)
                d->mdkh = mdkh;
            if (!mdh || !mdkh)
                return -1;
            d->mdcap = nc;
        }
    }
    if (key >= 0 && (uint64_t)key < d->mdcap) {
        if ((uint64_t)key >= d->mdhi) {
            memset(d->mdh + d->mdhi, 0, ((size_t)key + 1 - d->mdhi) * sizeof *d->mdh);
            memset(d->mdkh + d->mdhi, 0, ((size_t)key + 1 - d->mdhi) * sizeof *d->mdkh);
            d->mdhi = (size_t)key + 1;
        }
        m->h = &d->mdh[key];
        m->kh = &d->mdkh[key];
        return 0;
    }
    if ((d->mhn + 1) * 2 > d->mslots) {
        size_t ncap = d->mslots ? d->mslots * 2 : 64;
        int64_t *nk = calloc(ncap, sizeof *nk);
        ment *nv = calloc(ncap, sizeof *nv);
        if (!nk || !nv) {
            free(nk);
            free(nv);
            return -1;
        }
        for (size_t i = 0; i < d->mslots; i++) {
            if (!d->mv[i].kh)
                continue;
            size_t s = key_hash(d->mkeys[i]) & (ncap - 1);
            while (nv[s].kh)
                s = (s + 1) & (ncap - 1);
            nk[s] = d->mkeys[i];
            nv[s] = d->mv[i];
        }
        free(d->mkeys);
        free(d->mv);
        d->mkeys = nk;
        d->mv = nv;
        d->mslots = ncap;
    }
    size_t mask = d->mslots - 1;
    size_t s = key_hash(key) & mask;
    while (d->mv[s].kh)
        s = (s + 1) & mask;
    d->mkeys[s] = key;
    d->mhn++;
    m->h = &d->mv[s].h;
    m->kh = &d->mv[s].kh;
    return 0;
}

static mpc_status memo_put_any(dec *d, int64_t key)
{
    mpc_status st = need(d, 1);
    if (st)
        return st;
    size_t top = d->sn - 1;
    mslot m;
    if (key >= 0 && (uint64_t)key == d->mdhi && d->mdhi < d->mdcap && !d->mhn) {
        /* the next dense key (what CPython writes), stored nowhere yet: a
         * fresh slot */
        m.h = &d->mdh[d->mdhi];
        m.kh = &d->mdkh[d->mdhi];
        d->mdhi++;
        d->mcount++;
    } else if (memo_find(d, key, &m)) {
        h_release(d, *m.h, KH_KIND(*m.kh));
    } else {
        if (memo_new(d, key, &m) < 0)
            return nomem(d);
        d->mcount++;
    }
    *m.h = d->sh[top];
    *m.kh = d->skh[top];
    h_ref(d, *m.h, KH_KIND(*m.kh));
    return MPC_OK;
}

/* Stores the top of the stack under key.  Inline, the case CPython's
 * pickles make nearly every time (the next dense key, room in the direct
 * array, an object above the latest mark); memo_put_any() the others. */
static inline mpc_status memo_put(dec *d, int64_t key)
{
    size_t k = d->mdhi;
    if (key >= 0 && (uint64_t)key == k && k < d->mdcap && !d->mhn && d->sn > fence(d)) {
        size_t top = d->sn - 1;
        d->mdhi = k + 1;
        d->mcount++;
        d->mdh[k] = d->sh[top];
        d->mdkh[k] = d->skh[top];
        h_ref(d, d->mdh[k], KH_KIND(d->mdkh[k]));
        return MPC_OK;
    }
    return memo_put_any(d, key);
}

static inline mpc_status memo_get(dec *d, int64_t key)
{
    mslot m;
    if (key >= 0 && (uint64_t)key < d->mdhi && d->mdkh[key]) {
        m.h = &d->mdh[key];
        m.kh = &d->mdkh[key];
    } else if (!memo_find(d, key, &m)) {
        return fail(d, "memo key %lld not found", (long long)key);
    }
    void *h = *m.h;
    uint32_t kh = *m.kh;
    h_ref(d, h, KH_KIND(kh));
    return push_ok(d, h, KH_KIND(kh), KH_HEIGHT(kh));
}

static void memo_release(dec *d)
{
    void **mdh = d->mdh;
    const uint32_t *mdkh = d->mdkh;
    const size_t n = d->mdhi;
    void (*release)(void *, void *) = d->b->release;
    void *ctx = d->ctx;
    for (size_t i = 0; i < n; i++)
        if (mdkh[i] && KH_KIND(mdkh[i]) != MPC__V_GLOBAL)
            release(ctx, mdh[i]);
    for (size_t i = 0; i < d->mslots; i++)
        if (d->mv[i].kh)
            h_release(d, d->mv[i].h, KH_KIND(d->mv[i].kh));
    free_array(d->mdh, d->mdh0);
    free_array(d->mdkh, d->mdkh0);
    free(d->mkeys);
    free(d->mv);
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

/* An int beyond int64 from the builder (text: "[-]digits"). */
static mpc_status push_bigint(dec *d, const unsigned char *s, size_t n, int text)
{
    void *h = d->b->bigint(d->ctx, s, n, text, &d->berr);
    if (!h && d->berr.status != MPC_NOMEM)
        return fail(d, "integer%s in %s %s", text ? " literal" : "", op_name(d->p[d->op_at]),
                    d->berr.message);
    return push_h(d, h, MPC_V_INT, 1);
}

/* Decimal text of INT and LONG.  CPython reads both with the rules of
 * base 0 (INT through C's strtol: "011" is octal 9; LONG through int(s, 0):
 * "0x10" is 16, "1_000" is 1000; spaces and '+' pass; and an INT of any
 * two characters that read as 0 or 1, such as "-0", is a bool), but
 * writes only plain decimal: "-5", "0", "123" (then "L" for LONG).  So only
 * that is accepted, never a text CPython would read as another value. */
static mpc_status push_int_text(dec *d, const char *s, size_t n)
{
    int neg = 0;
    size_t i = 0;
    if (i < n && s[i] == '-')
        neg = s[i++] == '-';
    if (i == n || (s[i] == '0' && (n - i > 1 || neg)))
        return fail(d, "invalid literal for int() in %s (only the plain decimal CPython writes "
                       "is accepted)",
                    op_name(d->p[d->op_at]));
    uint64_t v = 0;
    int big = 0;
    for (size_t k = i; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return fail(d, "invalid literal for int() in %s", op_name(d->p[d->op_at]));
        unsigned dg = (unsigned)(s[k] - '0');
        if (v > (UINT64_MAX - dg) / 10)
            big = 1;
        else
            v = v * 10 + dg;
    }
    if (!big && v <= (uint64_t)INT64_MAX + (uint64_t)neg)
        return push_scalar(d, MPC_V_INT, neg ? (int64_t)(0 - v) : (int64_t)v, 0);
    /* "[-]digits" for the builder: the text itself. */
    return push_bigint(d, (const unsigned char *)s, n, 1);
}

/* LONG1/LONG4 payload: little-endian two's complement. */
static mpc_status push_long_bytes(dec *d, const unsigned char *b, size_t n)
{
    if (n <= 8) {
        uint64_t v = 0;
        for (size_t i = n; i-- > 0;)
            v = (v << 8) | b[i];
        if (n && n < 8 && (b[n - 1] & 0x80))
            v |= ~(uint64_t)0 << (8 * n); /* sign extension */
        return push_scalar(d, MPC_V_INT, (int64_t)v, 0);
    }
    return push_bigint(d, b, n, 0);
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
    /* A finite literal beyond the double range: CPython raises
     * OverflowError (an underflow to 0 or a subnormal is fine). */
    if (isinf(f) && !strpbrk(buf, "iI"))
        return fail(d, "value too large to convert to float in FLOAT");
    return push_scalar(d, MPC_V_FLOAT, 0, f);
}

/* The builder's buffer() of kind failed. */
static mpc_status buffer_failed(dec *d, int kind)
{
    if (kind == MPC_V_STR && d->berr.status != MPC_NOMEM)
        return fail(d, "invalid UTF-8 in %s", op_name(d->p[d->op_at]));
    return builder_failed(d);
}

/* A str, bytes or bytearray of the builder. */
static inline mpc_status push_buffer(dec *d, int kind, const void *s, size_t n)
{
    void *h = d->b->buffer(d->ctx, (mpc_vkind)kind, s ? s : "", n, &d->berr);
    if (!h)
        return buffer_failed(d, kind);
    return push_ok(d, h, kind, 1);
}

/* Latin-1 bytes as a str. */
static mpc_status push_latin1_str(dec *d, const unsigned char *s, size_t n)
{
    mpc__buf b = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned char u[4];
        mpc__buf_put(&b, u, mpc__utf8_put(s[i], u));
    }
    if (b.failed) {
        mpc__buf_release(&b);
        return nomem(d);
    }
    mpc_status st = push_buffer(d, MPC_V_STR, b.data, b.len);
    mpc__buf_release(&b);
    return st;
}

/* A Python 2 str, per the py2_str option. */
static mpc_status push_py2str(dec *d, const unsigned char *s, size_t n)
{
    switch (d->py2_str) {
    case MPC_PY2STR_BYTES: return push_buffer(d, MPC_V_BYTES, s, n);
    case MPC_PY2STR_LATIN1: return push_latin1_str(d, s, n);
    default:
        for (size_t i = 0; i < n; i++)
            if (s[i] >= 0x80)
                return fail(d, "non-ASCII byte 0x%02x in a Python 2 str of %s (decode with "
                               "py2_str BYTES or LATIN1)",
                            s[i], op_name(d->p[d->op_at]));
        return push_buffer(d, MPC_V_STR, s, n);
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
    mpc_status st = push_buffer(d, MPC_V_STR, b.data, b.len);
    mpc__buf_release(&b);
    return st;
}

/* --- containers --- */

static uint32_t taller(uint32_t a, uint32_t b) { return a > b ? a : b; }

/* fill() when the items hold a problem the decoder finds itself (an
 * allowed global as an item, an odd number of items for a dict), reported
 * where CPython's order of insertion meets it: the items before go to the
 * builder first, whose own failure (an unhashable key, say) comes first.
 * bad: the index of the first global, or n. */
static mpc_status fill_problem(dec *d, int kind, size_t from, size_t c_at, size_t bad)
{
    size_t n = d->sn - from, ok, i;
    int problem = bad < n ? 1 : 2; /* 1: a global at index bad; 2: odd number of items */
    if (kind == MPC_V_DICT)
        ok = problem == 1 ? bad - bad % 2 : n - 1;
    else
        ok = bad;
    uint32_t h = c_at == SIZE_MAX ? 1 : KH_HEIGHT(d->skh[c_at]);
    for (i = 0; i < ok; i++)
        h = taller(h, KH_HEIGHT(d->skh[from + i]) + 1);
    mpc_status st = MPC_OK;
    if (d->check_depth && h > d->max_depth) {
        st = fail(d, "%s: nesting deeper than %u", op_name(d->p[d->op_at]),
                  (unsigned)d->max_depth);
        drop_to(d, from);
        return st;
    }
    void *c = NULL;
    if (c_at == SIZE_MAX)
        c = d->b->make(d->ctx, (mpc_vkind)kind, d->sh + from, ok, &d->berr);
    else
        st = d->b->add(d->ctx, d->sh[c_at], (mpc_vkind)kind, d->sh + from, ok, &d->berr);
    /* The builder took the first ok items; the rest are released. */
    for (i = from + ok; i < d->sn; i++)
        h_release(d, d->sh[i], KH_KIND(d->skh[i]));
    void *g = problem == 1 ? d->sh[from + bad] : NULL; /* (an id: still valid) */
    d->sn = from;
    if ((c_at == SIZE_MAX && !c) || st)
        return builder_failed(d);
    if (c)
        d->b->release(d->ctx, c);
    if (problem == 1)
        return global_as_value(d, g);
    return fail(d, "odd number of items for %s", op_name(d->p[d->op_at]));
}

/* Moves stack[from..sn) into a container of kind: a new one (c_at is
 * SIZE_MAX; it is pushed) or the one at stack index c_at. */
static mpc_status fill(dec *d, int kind, size_t from, size_t c_at)
{
    size_t n = d->sn - from, i;
    const uint32_t *skh = d->skh + from;
    uint32_t top = 0;
    /* (one pass, with no branch per item: the tallest item, of height
     * GLOBAL_HEIGHT if an allowed global is among them) */
    for (i = 0; i < n; i++)
        top = taller(top, skh[i]);
    if (KH_HEIGHT(top) >= GLOBAL_HEIGHT || (kind == MPC_V_DICT && n % 2)) {
        for (i = 0; i < n && KH_KIND(skh[i]) != MPC__V_GLOBAL; i++)
            ;
        return fill_problem(d, kind, from, c_at, i);
    }
    uint32_t h = c_at == SIZE_MAX ? 1 : KH_HEIGHT(d->skh[c_at]);
    if (n)
        h = taller(h, KH_HEIGHT(top) + 1);
    if (h >= GLOBAL_HEIGHT)
        h = GLOBAL_HEIGHT - 1; /* (only without check_depth: see GLOBAL_HEIGHT) */
    if (d->check_depth && h > d->max_depth) {
        mpc_status st = fail(d, "%s: nesting deeper than %u", op_name(d->p[d->op_at]),
                             (unsigned)d->max_depth);
        drop_to(d, from);
        return st;
    }
    d->sn = from; /* the builder takes the items */
    if (c_at != SIZE_MAX) {
        if (d->b->add(d->ctx, d->sh[c_at], (mpc_vkind)kind, d->sh + from, n, &d->berr))
            return builder_failed(d);
        d->skh[c_at] = KH(kind, h);
        return MPC_OK;
    }
    return push_h(d, d->b->make(d->ctx, (mpc_vkind)kind, d->sh + from, n, &d->berr), kind, h);
}

/* EMPTY_LIST, EMPTY_TUPLE, EMPTY_DICT, EMPTY_SET: fill() of no items (an
 * empty container's height, 1, is within every bound). */
static inline mpc_status push_empty(dec *d, int kind)
{
    return push_h(d, d->b->make(d->ctx, (mpc_vkind)kind, d->sh + d->sn, 0, &d->berr), kind, 1);
}

/* Builds a new container of kind from the items above the latest mark. */
static mpc_status build_from_mark(dec *d, int kind)
{
    size_t start = 0;
    mpc_status st = pop_mark(d, &start);
    if (st)
        return st;
    return fill(d, kind, start, SIZE_MAX);
}

/* APPENDS / SETITEMS / ADDITEMS: items above the mark go into the object just
 * below it.  (Inline: run_machine() runs the first two.) */
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
static inline mpc_status add_from_mark(dec *d, int kind)
{
    size_t start = 0;
    mpc_status st = pop_mark(d, &start);
    if (st)
        return st;
    if (start == 0 || start - 1 < fence(d))
        return underflow(d);
    size_t c = start - 1;
    if (KH_KIND(d->skh[c]) != kind)
        return fail(d, "%s on a %s", op_name(d->p[d->op_at]), kind_text(KH_KIND(d->skh[c])));
    if (kind == MPC_V_SET && d->b->can_add && !d->b->can_add(d->ctx, d->sh[c]))
        return fail(d, "refused %s: the %s is already inside another container",
                    op_name(d->p[d->op_at]), kind_text(KH_KIND(d->skh[c])));
    return fill(d, kind, start, c);
}

/* APPEND / SETITEM: the last n items go into the object below them. */
static mpc_status add_top(dec *d, int kind, size_t n)
{
    mpc_status st = need(d, n + 1);
    if (st)
        return st;
    size_t c = d->sn - n - 1;
    if (KH_KIND(d->skh[c]) != kind)
        return fail(d, "%s on a %s", op_name(d->p[d->op_at]), kind_text(KH_KIND(d->skh[c])));
    return fill(d, kind, d->sn - n, c);
}

/* TUPLE1..3 */
static mpc_status tuple_n(dec *d, size_t n)
{
    mpc_status st = need(d, n);
    if (st)
        return st;
    return fill(d, MPC_V_TUPLE, d->sn - n, SIZE_MAX);
}

/* --- globals and REDUCE --- */

/* The allowed global named module.name, or 0.  Python 2's "__builtin__"
 * is "builtins" only below protocol 3, as CPython maps it (fix_imports). */
static int global_id(const dec *d, const char *mod, size_t ml, const char *name, size_t nl)
{
#define IS(s, l, lit) ((l) == sizeof(lit) - 1 && memcmp((s), (lit), (l)) == 0)
    if (IS(mod, ml, "builtins") || (IS(mod, ml, "__builtin__") && d->proto < 3)) {
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
    int id = global_id(d, mod, ml, name, nl);
    if (!id) {
        char m[96], n[96];
        mpc__repr_bytes(mod, ml, m, sizeof m);
        mpc__repr_bytes(name, nl, n, sizeof n);
        return fail(d, "refused opcode %s of global '%s.%s'", op_name(d->p[d->op_at]), m, n);
    }
    return push_h(d, (void *)(uintptr_t)id, MPC__V_GLOBAL, GLOBAL_HEIGHT);
}

/* Whether h is a str or bytes equal to lit. */
static int is_str(dec *d, void *h, const char *lit)
{
    mpc_vkind k = d->b->kind(d->ctx, h);
    size_t n = 0;
    const char *s = k == MPC_V_STR || k == MPC_V_BYTES ? d->b->data(d->ctx, h, &n) : NULL;
    return s && n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* The str h (code points all below 256) as bytes or a bytearray (Latin-1):
 * MPC_OK pushed, 1 when a code point is beyond 255, or a failure. */
static mpc_status push_str_latin1(dec *d, void *h, int kind)
{
    size_t n = 0, i = 0, o = 0;
    const unsigned char *p = (const unsigned char *)d->b->data(d->ctx, h, &n);
    if (!p)
        return (mpc_status)1; /* (a str the builder cannot give as UTF-8: surrogates) */
    unsigned char *tmp = malloc(n + 1);
    if (!tmp)
        return nomem(d);
    while (i < n) {
        uint32_t cp = mpc__utf8_next(p, n, &i);
        if (cp > 0xff) {
            free(tmp);
            return (mpc_status)1;
        }
        tmp[o++] = (unsigned char)cp;
    }
    mpc_status st = push_buffer(d, kind, tmp, o);
    free(tmp);
    return st;
}

/* set(list) / frozenset(list): a new set of the list's items. */
static mpc_status push_set_of(dec *d, int kind, void *list)
{
    size_t n = d->b->len(d->ctx, list);
    void **items = malloc((n ? n : 1) * sizeof *items);
    if (!items)
        return nomem(d);
    for (size_t i = 0; i < n; i++) {
        items[i] = d->b->item(d->ctx, list, i);
        d->b->ref(d->ctx, items[i]);
    }
    void *s = d->b->make(d->ctx, (mpc_vkind)kind, items, n, &d->berr);
    free(items);
    return push_h(d, s, kind, 1); /* (height: the decoder never nests a set in it) */
}

static mpc_status reduce(dec *d)
{
    mpc_status st = need(d, 2);
    if (st)
        return st;
    size_t fn = d->sn - 2, at = d->sn - 1;
    if (KH_KIND(d->skh[fn]) != MPC__V_GLOBAL)
        return fail(d, "refused opcode REDUCE of a %s (not an allowed global)",
                    kind_text(KH_KIND(d->skh[fn])));
    const char *g = global_text(d->sh[fn]);
    int id = (int)(uintptr_t)d->sh[fn];
    void *args = d->sh[at];
    int bad = KH_KIND(d->skh[at]) != MPC_V_TUPLE;
    size_t n = bad ? 0 : d->b->len(d->ctx, args);
    void *a0 = n > 0 ? d->b->item(d->ctx, args, 0) : NULL;
    void *a1 = n > 1 ? d->b->item(d->ctx, args, 1) : NULL;
    mpc_vkind k0 = a0 ? d->b->kind(d->ctx, a0) : MPC_V_NONE;
    mpc_vkind k1 = a1 ? d->b->kind(d->ctx, a1) : MPC_V_NONE;
    /* The result is pushed above fn and args, then moved down. */
    st = MPC_OK;
    if (!bad) {
        switch (id) {
        case G_SET:
        case G_FROZENSET:
            if (n != 1 || k0 != MPC_V_LIST)
                bad = 1;
            else
                st = push_set_of(d, id == G_SET ? MPC_V_SET : MPC_V_FROZENSET, a0);
            break;
        case G_BYTES:
            if (n != 0)
                bad = 1;
            else
                st = push_buffer(d, MPC_V_BYTES, "", 0);
            break;
        case G_BYTEARRAY:
            if (n == 0) {
                st = push_buffer(d, MPC_V_BYTEARRAY, "", 0);
            } else if (n == 1 && k0 == MPC_V_BYTES) {
                size_t len = 0;
                const char *s = d->b->data(d->ctx, a0, &len);
                if (!s)
                    bad = 1;
                else
                    st = push_buffer(d, MPC_V_BYTEARRAY, s, len);
            } else if (n == 2 && k0 == MPC_V_STR && is_str(d, a1, "latin-1")) {
                st = push_str_latin1(d, a0, MPC_V_BYTEARRAY);
                if (st == 1)
                    return fail(d, "REDUCE of global '%s': argument not encodable as latin-1", g);
            } else {
                bad = 1;
            }
            break;
        case G_ENCODE:
            if (n == 2 && k0 == MPC_V_STR && k1 == MPC_V_STR && is_str(d, a1, "latin1")) {
                st = push_str_latin1(d, a0, MPC_V_BYTES);
                if (st == 1)
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
    if (st)
        return st;
    /* fn and args go; the result takes fn's place. */
    void *res = d->sh[d->sn - 1];
    int rk = KH_KIND(d->skh[d->sn - 1]);
    d->sn--;
    drop_to(d, fn);
    return push_h(d, res, rk, 1);
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
        size_t cls = d->sn - (op == 0x81 ? 2 : 3);
        if (KH_KIND(d->skh[cls]) == MPC__V_GLOBAL)
            return fail(d, "refused opcode %s of global '%s'", name, global_text(d->sh[cls]));
    }
    return fail(d, "refused opcode %s", name);
}

/* --- the machine --- */

/* step()'s answer once STOP has run (a value no call returns as a status). */
#define DEC_STOPPED MPC__STATUS_COUNT

/* One opcode (pos < len): MPC_OK, DEC_STOPPED after STOP, or a failure.
 * Every opcode is here; run_machine() takes the common ones itself.  Kept
 * out of run_machine(), where it would crowd the registers of the common
 * path. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static mpc_status step(dec *d, void **result)
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
        d->proto = b[0];
        return MPC_OK;
    case 0x95: /* FRAME: framing is advisory; only check the claim. */
        if ((st = take(d, 8, &b)))
            return st;
        if (le(b, 8) > d->len - d->pos)
            return truncated(d);
        return MPC_OK;
    case '.': /* STOP */
        if ((st = need(d, 1)))
            return st;
        if (KH_KIND(d->skh[d->sn - 1]) == MPC__V_GLOBAL)
            return global_as_value(d, d->sh[d->sn - 1]);
        *result = d->sh[--d->sn];
        return DEC_STOPPED;
    case '(':
        if (d->mn == d->mcap) {
            size_t ncap = d->mcap * 2;
            size_t *m = grow_array(d->marks, d->marks0, d->mn, ncap, sizeof *m);
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
        h_ref(d, d->sh[d->sn - 1], KH_KIND(d->skh[d->sn - 1]));
        return push_h(d, d->sh[d->sn - 1], KH_KIND(d->skh[d->sn - 1]),
                      KH_HEIGHT(d->skh[d->sn - 1]));
    case 'N': return push_scalar(d, MPC_V_NONE, 0, 0);
    case 0x88: return push_scalar(d, MPC_V_BOOL, 1, 0);
    case 0x89: return push_scalar(d, MPC_V_BOOL, 0, 0);
    case 'I':
        if ((st = take_line(d, &s, &n)))
            return st;
        if (n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
            return push_scalar(d, MPC_V_BOOL, s[1] == '1', 0);
        return push_int_text(d, s, n);
    case 'J':
        if ((st = take(d, 4, &b)))
            return st;
        return push_scalar(d, MPC_V_INT, (int32_t)(uint32_t)le(b, 4), 0);
    case 'K':
        if ((st = take(d, 1, &b)))
            return st;
        return push_scalar(d, MPC_V_INT, b[0], 0);
    case 'M':
        if ((st = take(d, 2, &b)))
            return st;
        return push_scalar(d, MPC_V_INT, (int64_t)le(b, 2), 0);
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
        uint64_t bits = (uint64_t)b[0] << 56 | (uint64_t)b[1] << 48 | (uint64_t)b[2] << 40 |
                        (uint64_t)b[3] << 32 | (uint64_t)b[4] << 24 | (uint64_t)b[5] << 16 |
                        (uint64_t)b[6] << 8 | (uint64_t)b[7];
        double f;
        memcpy(&f, &bits, sizeof f);
        return push_scalar(d, MPC_V_FLOAT, 0, f);
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
    case 0x8c: /* SHORT_BINUNICODE */
    case 'C': { /* SHORT_BINBYTES */
        if (d->pos == d->len)
            return truncated(d);
        size_t cnt = d->p[d->pos];
        if (cnt > d->len - d->pos - 1)
            return truncated(d);
        b = d->p + d->pos + 1;
        d->pos += 1 + cnt;
        return push_buffer(d, op == 'C' ? MPC_V_BYTES : MPC_V_STR, b, cnt);
    }
    case 'X':
    case 0x8d:
    case 'B':
    case 0x8e:
    case 0x96: {
        int w = (op == 'X' || op == 'B') ? 4 : 8;
        if ((st = take(d, (size_t)w, &b)))
            return st;
        uint64_t cnt = le(b, w);
        if (cnt > d->len - d->pos)
            return truncated(d);
        if ((st = take(d, (size_t)cnt, &b)))
            return st;
        if (op == 'X' || op == 0x8d)
            return push_buffer(d, MPC_V_STR, b, cnt);
        return push_buffer(d, op == 0x96 ? MPC_V_BYTEARRAY : MPC_V_BYTES, b, cnt);
    }
    case ']': return push_empty(d, MPC_V_LIST);
    case ')': return push_empty(d, MPC_V_TUPLE);
    case '}': return push_empty(d, MPC_V_DICT);
    case 0x8f: return push_empty(d, MPC_V_SET);
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
        size_t mi = d->sn - 2, ni = d->sn - 1;
        if (KH_KIND(d->skh[mi]) != MPC_V_STR || KH_KIND(d->skh[ni]) != MPC_V_STR)
            return fail(d, "STACK_GLOBAL requires str");
        size_t ml = 0, nl = 0;
        const char *m = d->b->data(d->ctx, d->sh[mi], &ml);
        const char *nm = d->b->data(d->ctx, d->sh[ni], &nl);
        if (!m || !nm)
            return fail(d, "refused opcode STACK_GLOBAL of a global whose name is not UTF-8");
        st = push_global(d, m, ml, nm, nl);
        if (st)
            return st;
        /* Replace the two strs with the global just pushed. */
        d->sn--;
        drop_to(d, mi);
        return push_h(d, d->sh[d->sn + 2], MPC__V_GLOBAL, GLOBAL_HEIGHT);
    }
    case 'R': return reduce(d);
    case 'b': case 'i': case 'o': case 0x81: case 0x92: case 'P': case 'Q':
    case 0x82: case 0x83: case 0x84: case 0x97: case 0x98:
        return refuse(d, op);
    default:
        return fail(d, "invalid opcode 0x%02x", op);
    }
}

/* Runs the machine to STOP: DEC_STOPPED, or a failure.
 *
 * The opcodes that make up most of what CPython writes (memo references,
 * short str and bytes, small ints, floats, bools, marks, empty containers)
 * run here with the busiest state (input pointer, stack) in locals: the dec
 * struct's address goes to every call, so its fields would otherwise be
 * loaded and stored around each opcode.  A case here does what step() does
 * for its opcode when nothing unusual happens.  Any other situation
 * (truncated input, a memo key that is not in the dense array or not the
 * next one, nothing above the mark, no room for a mark) goes to step(),
 * which runs the opcode from its start: a case changes nothing before it
 * knows it will complete.  A builder call that fails gets step()'s error.
 *
 * Each opcode here takes at least one byte of input and pushes at most one
 * entry, so while the input pointer is below lim (at most as many bytes
 * ahead as the stack has free entries) no push needs a check for room. */
static mpc_status run_machine(dec *d, void **result)
{
    const unsigned char *const p = d->p, *const end = d->p + d->len;
    const mpc_value_builder *const b = d->b;
    void *const ctx = d->ctx;
    const unsigned char *ip = p + d->pos;
    size_t sn = d->sn, fnc = fence(d);
    void **sh = d->sh;
    uint32_t *skh = d->skh;
    mpc_status st;
    for (;;) {
        size_t room = d->scap - sn;
        const unsigned char *lim = (size_t)(end - ip) > room ? ip + room : end;
        while (ip < lim) {
            const unsigned char *at = ip;
            size_t left = (size_t)(end - ip), key, n;
            void *h;
            uint32_t kh;
            int64_t i = 0;
            double f = 0;
            switch (*ip) {
            case 'h': /* BINGET */
                if (left < 2)
                    goto slow;
                key = ip[1];
                n = 2;
                goto get;
            case 'j': /* LONG_BINGET */
                if (left < 5)
                    goto slow;
                key = (size_t)le(ip + 1, 4);
                n = 5;
                goto get;
            case 0x94: /* MEMOIZE */
                key = d->mcount;
                n = 1;
                goto put;
            case 'q': /* BINPUT */
                if (left < 2)
                    goto slow;
                key = ip[1];
                n = 2;
                goto put;
            case 0x8c: /* SHORT_BINUNICODE */
                kh = KH(MPC_V_STR, 1);
                goto short_buffer;
            case 'C': /* SHORT_BINBYTES */
                kh = KH(MPC_V_BYTES, 1);
                goto short_buffer;
            case 'K': /* BININT1 */
                if (left < 2)
                    goto slow;
                i = ip[1];
                ip += 2;
                kh = KH(MPC_V_INT, 1);
                goto scalar;
            case 'M': /* BININT2 */
                if (left < 3)
                    goto slow;
                i = (int64_t)le(ip + 1, 2);
                ip += 3;
                kh = KH(MPC_V_INT, 1);
                goto scalar;
            case 'J': /* BININT */
                if (left < 5)
                    goto slow;
                i = (int32_t)(uint32_t)le(ip + 1, 4);
                ip += 5;
                kh = KH(MPC_V_INT, 1);
                goto scalar;
            case 'G': { /* BINFLOAT */
                if (left < 9)
                    goto slow;
                uint64_t bits = (uint64_t)ip[1] << 56 | (uint64_t)ip[2] << 48 |
                                (uint64_t)ip[3] << 40 | (uint64_t)ip[4] << 32 |
                                (uint64_t)ip[5] << 24 | (uint64_t)ip[6] << 16 |
                                (uint64_t)ip[7] << 8 | (uint64_t)ip[8];
                memcpy(&f, &bits, sizeof f);
                ip += 9;
                kh = KH(MPC_V_FLOAT, 1);
                goto scalar;
            }
            case 'N': /* NONE */
                ip++;
                kh = KH(MPC_V_NONE, 1);
                goto scalar;
            case 0x88: /* NEWTRUE */
                i = 1;
                /* fall through */
            case 0x89: /* NEWFALSE */
                ip++;
                kh = KH(MPC_V_BOOL, 1);
                goto scalar;
            case '(': /* MARK */
                if (d->mn == d->mcap)
                    goto slow;
                d->marks[d->mn++] = sn;
                fnc = sn;
                ip++;
                continue;
            case ']': /* EMPTY_LIST */
                kh = KH(MPC_V_LIST, 1);
                goto empty;
            case '}': /* EMPTY_DICT */
                kh = KH(MPC_V_DICT, 1);
                goto empty;
            case ')': /* EMPTY_TUPLE */
                kh = KH(MPC_V_TUPLE, 1);
                goto empty;
            case 'u': /* SETITEMS */
            case 'e': /* APPENDS */
            case 'a': /* APPEND */
                /* (step()'s own calls, without its dispatch) */
                d->op_at = (size_t)(at - p);
                d->pos = d->op_at + 1;
                d->sn = sn;
                st = *ip == 'a' ? add_top(d, MPC_V_LIST, 1)
                                : add_from_mark(d, *ip == 'u' ? MPC_V_DICT : MPC_V_LIST);
                if (st)
                    return st;
                goto reload;
            default: goto slow;
            }
        get: /* memo key at ip + 1, n bytes */
            if (key >= d->mdhi || !(kh = d->mdkh[key]))
                goto slow;
            h = d->mdh[key];
            if (KH_KIND(kh) != MPC__V_GLOBAL)
                b->ref(ctx, h);
            ip += n;
            goto push;
        put: /* the next dense memo key at ip + 1, n bytes */
            if (key != d->mdhi || key >= d->mdcap || d->mhn || sn <= fnc)
                goto slow;
            d->mdhi = key + 1;
            d->mcount++;
            d->mdh[key] = sh[sn - 1];
            d->mdkh[key] = skh[sn - 1];
            if (KH_KIND(skh[sn - 1]) != MPC__V_GLOBAL)
                b->ref(ctx, sh[sn - 1]);
            ip += n;
            continue;
        short_buffer:
            if (left < 2 || ip[1] > left - 2)
                goto slow;
            h = b->buffer(ctx, (mpc_vkind)KH_KIND(kh), ip + 2, ip[1], &d->berr);
            if (!h) {
                d->sn = sn;
                d->op_at = (size_t)(at - p);
                return buffer_failed(d, KH_KIND(kh));
            }
            ip += 2 + (size_t)ip[1];
            goto push_then_memoize;
        empty:
            h = b->make(ctx, (mpc_vkind)KH_KIND(kh), sh + sn, 0, &d->berr);
            if (!h)
                goto failed;
            ip++;
            goto push_then_memoize;
        scalar:
            h = b->scalar(ctx, (mpc_vkind)KH_KIND(kh), i, f, &d->berr);
            if (!h)
                goto failed;
        push:
            sh[sn] = h;
            skh[sn] = kh;
            sn++;
            continue;
        push_then_memoize:
            /* (CPython memoizes every str, bytes and container at once: the
             * MEMOIZE that follows, if any, without a trip to the switch) */
            sh[sn] = h;
            skh[sn] = kh;
            sn++;
            if (ip < end && *ip == 0x94) {
                key = d->mcount;
                n = 1;
                goto put;
            }
            continue;
        failed:
            d->sn = sn;
            d->op_at = (size_t)(at - p);
            return builder_failed(d);
        }
        if (ip == end) {
            d->sn = sn;
            d->op_at = d->len;
            return truncated(d);
        }
    slow:
        /* Everything else, the situations above that are not the usual
         * one, and a full stack: step() with the state stored, then the
         * state reloaded. */
        d->pos = (size_t)(ip - p);
        d->sn = sn;
        st = step(d, result);
        if (st)
            return st;
    reload:
        ip = p + d->pos;
        sn = d->sn;
        sh = d->sh;
        skh = d->skh;
        fnc = fence(d);
    }
}

static uint32_t depth_of(const mpc_decode_options *opts)
{
    if (!opts || !opts->max_depth)
        return MPC_VALUE_DEPTH_DEFAULT;
    return opts->max_depth > MPC_VALUE_DEPTH_MAX ? MPC_VALUE_DEPTH_MAX : opts->max_depth;
}

mpc_status mpc_value_decode_with(const void *pickle, size_t len, const mpc_decode_options *opts,
                                 const mpc_value_builder *b, void *ctx, void **out,
                                 mpc_error *err)
{
    if (out)
        *out = NULL;
    if (!out || !b || (!pickle && len))
        return mpc__error(err, MPC_INVAL, 0, "NULL argument");
    dec d;
    /* (berr and the inline arrays are not cleared: nothing reads them
     * unwritten) */
    memset(&d, 0, offsetof(dec, berr));
    d.berr.status = MPC_OK;
    d.berr.message[0] = '\0';
    d.sh = d.sh0;
    d.skh = d.skh0;
    d.scap = DEC_STACK0;
    d.marks = d.marks0;
    d.mcap = DEC_MARKS0;
    d.mdh = d.mdh0;
    d.mdkh = d.mdkh0;
    d.mdcap = DEC_MEMO0;
    d.p = pickle;
    d.len = len;
    d.b = b;
    d.ctx = ctx;
    d.err = err;
    d.max_depth = depth_of(opts);
    d.check_depth = !(b->flags & MPC_BUILDER_BOUNDS_DEPTH);
    if (opts)
        d.py2_str = opts->py2_str;
    mpc_status st = MPC_OK;
    void *result = NULL;
    if (len == 0)
        st = mpc__error(err, MPC_VALUE, 0, "empty pickle data (ran out of input)");
    if (!st)
        st = run_machine(&d, &result);
    if (st == DEC_STOPPED)
        st = MPC_OK;
    drop_to(&d, 0);
    free_array(d.sh, d.sh0);
    free_array(d.skh, d.skh0);
    free_array(d.marks, d.marks0);
    memo_release(&d);
    if (st) {
        if (result)
            b->release(ctx, result);
        return st;
    }
    *out = result;
    return MPC_OK;
}

/* --- the builder of mpc_value trees --- */

typedef struct tree_ctx {
    uint32_t max_depth;
    size_t max_digits;
} tree_ctx;

static mpc_value *t_nomem(mpc_error *err)
{
    mpc__error(err, MPC_NOMEM, 0, "out of memory");
    return NULL;
}

static void *t_scalar(void *ctx, mpc_vkind kind, int64_t i, double f, mpc_error *err)
{
    (void)ctx;
    mpc_value *v;
    switch (kind) {
    case MPC_V_BOOL: v = mpc_value_new_bool((int)i); break;
    case MPC_V_INT: v = mpc_value_new_int(i); break;
    case MPC_V_FLOAT: v = mpc_value_new_float(f); break;
    default: v = mpc_value_new_none(); break;
    }
    return v ? v : t_nomem(err);
}

static void *t_bigint(void *ctx, const unsigned char *data, size_t len, int text, mpc_error *err)
{
    const tree_ctx *t = ctx;
    int64_t small;
    char *s = NULL;
    size_t slen = 0;
    int r;
    if (text) {
        int neg = len && data[0] == '-';
        r = mpc__bigint_parse((const char *)data + neg, len - (size_t)neg, neg, 10, t->max_digits,
                              &small, &s, &slen);
    } else {
        r = mpc__bigint_from_le(data, len, t->max_digits, &small, &s, &slen);
    }
    if (r < 0) {
        mpc__error(err, MPC_VALUE, 0, "exceeds the limit of %zu digits", t->max_digits);
        return NULL;
    }
    if (r == 0) {
        mpc_value *v = mpc_value_new_int(small);
        return v ? v : t_nomem(err);
    }
    mpc_value *v = mpc__value_alloc(MPC_V_BIGINT);
    if (!v) {
        free(s);
        return t_nomem(err);
    }
    v->u.s.data = s;
    v->u.s.len = slen;
    return v;
}

static void *t_buffer(void *ctx, mpc_vkind kind, const void *data, size_t len, mpc_error *err)
{
    (void)ctx;
    if (kind == MPC_V_STR && !mpc__utf8_valid(data, len)) {
        mpc__error(err, MPC_VALUE, 0, "invalid UTF-8");
        return NULL;
    }
    mpc_value *v = mpc__value_new_buf(kind, data, len);
    return v ? v : t_nomem(err);
}

/* Inserts items[0..n) into c (takes them all: on failure the rest are
 * released). */
static mpc_status t_fill(const tree_ctx *t, mpc_value *c, void **items, size_t n, mpc_error *err)
{
    mpc_status st = MPC_OK;
    size_t i;
    for (i = 0; i < n; i++) {
        mpc_value *it = items[i];
        if (c->kind == MPC_V_DICT) {
            st = mpc__value_dict_set(c, it, items[i + 1], t->max_depth, err);
            if (st)
                break;
            i++;
        } else if (c->kind == MPC_V_SET || c->kind == MPC_V_FROZENSET) {
            if ((st = mpc__value_set_add(c, it, t->max_depth, err)))
                break;
        } else if ((st = mpc__value_append(c, it, t->max_depth, err))) {
            break;
        }
    }
    for (; i < n; i++)
        mpc_value_free(items[i]);
    return st;
}

static void *t_make(void *ctx, mpc_vkind kind, void **items, size_t n, mpc_error *err)
{
    mpc_value *c = mpc__value_alloc(kind);
    if (!c) {
        for (size_t i = 0; i < n; i++)
            mpc_value_free(items[i]);
        return t_nomem(err);
    }
    if (t_fill(ctx, c, items, n, err)) {
        mpc_value_free(c);
        return NULL;
    }
    return c;
}

static mpc_status t_add(void *ctx, void *c, mpc_vkind kind, void **items, size_t n,
                        mpc_error *err)
{
    (void)kind;
    return t_fill(ctx, c, items, n, err);
}

static int t_can_add(void *ctx, void *c)
{
    (void)ctx;
    return mpc__value_can_modify(c);
}

static void t_ref(void *ctx, void *h)
{
    (void)ctx;
    mpc__value_ref(h);
}

static void t_release(void *ctx, void *h)
{
    (void)ctx;
    mpc_value_free(h);
}

static mpc_vkind t_kind(void *ctx, void *h)
{
    (void)ctx;
    return mpc_value_kind(h);
}

static const char *t_data(void *ctx, void *h, size_t *len)
{
    (void)ctx;
    return mpc_value_str(h, len);
}

static size_t t_len(void *ctx, void *h)
{
    (void)ctx;
    return mpc_value_len(h);
}

static void *t_item(void *ctx, void *h, size_t i)
{
    (void)ctx;
    return mpc_value_item(h, i);
}

static const mpc_value_builder tree_builder = {
    t_scalar, t_bigint, t_buffer, t_make, t_add, t_can_add, t_ref, t_release,
    t_kind, t_data, t_len, t_item, MPC_BUILDER_BOUNDS_DEPTH,
};

mpc_status mpc_value_decode(const void *pickle, size_t len, const mpc_decode_options *opts,
                            mpc_value **out, mpc_error *err)
{
    if (out)
        *out = NULL;
    if (!out || (!pickle && len))
        return mpc__error(err, MPC_INVAL, 0, "NULL argument");
    tree_ctx t;
    t.max_depth = depth_of(opts);
    t.max_digits = opts && opts->max_int_digits ? opts->max_int_digits
                                                 : MPC__BIGINT_DIGITS_DEFAULT;
    void *r = NULL;
    mpc_status st = mpc_value_decode_with(pickle, len, opts, &tree_builder, &t, &r, err);
    *out = r;
    return st;
}
