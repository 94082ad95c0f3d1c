/*
 * value.c - the value tree: constructors, accessors, release, and Python's
 * equality and hashing rules for dict keys and set elements.  Pure: no I/O,
 * no global state.  The pickle codec and the literal printer/parser build on
 * it; they live in their own files.
 *
 * Dicts and sets keep their elements in insertion order in one array and,
 * once they hold more than a few elements, a hash index over it, so that
 * building a large dict from a message costs linear time.  Nothing is ever
 * deleted from a container, so the index needs no tombstones.
 */
#include "value_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_MIN_ITEMS 8

mpc_value *mpc__value_alloc(int kind)
{
    mpc_value *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->kind = kind;
    v->refs = 1;
    v->height = 1;
    return v;
}

mpc_value *mpc__value_new_buf(int kind, const void *data, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    mpc_value *v = mpc__value_alloc(kind);
    if (!v)
        return NULL;
    v->u.s.data = malloc(len + 1);
    if (!v->u.s.data) {
        free(v);
        return NULL;
    }
    if (len)
        memcpy(v->u.s.data, data, len);
    v->u.s.data[len] = '\0';
    v->u.s.len = len;
    return v;
}

/* --- constructors --- */

mpc_value *mpc_value_new_none(void) { return mpc__value_alloc(MPC_V_NONE); }

mpc_value *mpc_value_new_bool(int b)
{
    mpc_value *v = mpc__value_alloc(MPC_V_BOOL);
    if (v)
        v->u.i = b != 0;
    return v;
}

mpc_value *mpc_value_new_int(int64_t i)
{
    mpc_value *v = mpc__value_alloc(MPC_V_INT);
    if (v)
        v->u.i = i;
    return v;
}

mpc_value *mpc_value_new_bigint(const char *text, size_t len)
{
    int neg = 0;
    size_t i = 0;
    if (!text)
        return NULL;
    if (i < len && (text[i] == '-' || text[i] == '+'))
        neg = text[i++] == '-';
    if (i == len)
        return NULL;
    for (size_t k = i; k < len; k++)
        if (text[k] < '0' || text[k] > '9')
            return NULL;
    int64_t small;
    char *big;
    size_t big_len;
    int r = mpc__bigint_parse(text + i, len - i, neg, 10, MPC__BIGINT_DIGITS_DEFAULT, &small, &big,
                              &big_len);
    if (r < 0)
        return NULL;
    if (r == 0)
        return mpc_value_new_int(small);
    mpc_value *v = mpc__value_alloc(MPC_V_BIGINT);
    if (!v) {
        free(big);
        return NULL;
    }
    v->u.s.data = big;
    v->u.s.len = big_len;
    return v;
}

mpc_value *mpc_value_new_float(double f)
{
    mpc_value *v = mpc__value_alloc(MPC_V_FLOAT);
    if (v)
        v->u.f = f;
    return v;
}

mpc_value *mpc_value_new_str(const char *utf8, size_t len)
{
    if ((!utf8 && len) || !mpc__utf8_valid((const unsigned char *)utf8, len))
        return NULL;
    return mpc__value_new_buf(MPC_V_STR, utf8, len);
}

mpc_value *mpc_value_new_bytes(const void *data, size_t len)
{
    if (!data && len)
        return NULL;
    return mpc__value_new_buf(MPC_V_BYTES, data, len);
}

mpc_value *mpc_value_new_bytearray(const void *data, size_t len)
{
    if (!data && len)
        return NULL;
    return mpc__value_new_buf(MPC_V_BYTEARRAY, data, len);
}

mpc_value *mpc_value_new_list(void) { return mpc__value_alloc(MPC_V_LIST); }
mpc_value *mpc_value_new_tuple(void) { return mpc__value_alloc(MPC_V_TUPLE); }
mpc_value *mpc_value_new_dict(void) { return mpc__value_alloc(MPC_V_DICT); }
mpc_value *mpc_value_new_set(void) { return mpc__value_alloc(MPC_V_SET); }
mpc_value *mpc_value_new_frozenset(void) { return mpc__value_alloc(MPC_V_FROZENSET); }

static int is_container(int kind)
{
    return kind == MPC_V_LIST || kind == MPC_V_TUPLE || kind == MPC_V_DICT || kind == MPC_V_SET ||
           kind == MPC_V_FROZENSET;
}

static void group_free(mpc__group *g);

/* Releases what a node holds (not the node's own memory). */
static void release_contents(mpc_value *v, const mpc__group *g);

void mpc_value_free(mpc_value *v)
{
    if (!v)
        return;
    if (v->grp) {
        v->refs--;
        if (--v->grp->ext == 0)
            group_free(v->grp);
        return;
    }
    if (--v->refs > 0)
        return;
    release_contents(v, NULL);
    free(v);
}

/* Children inside the group g are freed with it, not released one by one. */
static void release_contents(mpc_value *v, const mpc__group *g)
{
    switch (v->kind) {
    case MPC_V_STR:
    case MPC_V_BYTES:
    case MPC_V_BYTEARRAY:
    case MPC_V_BIGINT:
        free(v->u.s.data);
        break;
    case MPC_V_LIST:
    case MPC_V_TUPLE:
    case MPC_V_SET:
    case MPC_V_FROZENSET:
    case MPC_V_DICT: {
        size_t n = v->kind == MPC_V_DICT ? 2 * v->u.c.n : v->u.c.n;
        /* Outside groups depth is bounded by MPC_VALUE_DEPTH_MAX, so this
         * recursion is too; a member's children are members (freed by the
         * loop of group_free) or scalars. */
        for (size_t i = 0; i < n; i++)
            if (!g || v->u.c.items[i]->grp != g)
                mpc_value_free(v->u.c.items[i]);
        free(v->u.c.items);
        free(v->u.c.index);
        break;
    }
    default:
        break;
    }
}

static void group_free(mpc__group *g)
{
    for (size_t i = 0; i < g->n; i++)
        release_contents(g->m[i], g);
    for (size_t i = 0; i < g->n; i++)
        free(g->m[i]);
    free(g->m);
    free(g);
}

/* --- groups (see value_internal.h) --- */

typedef struct ptrvec {
    void **p;
    size_t n, cap;
} ptrvec;

static int pv_push(ptrvec *v, void *x)
{
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 16;
        void **np = realloc(v->p, nc * sizeof *np);
        if (!np)
            return 0;
        v->p = np;
        v->cap = nc;
    }
    v->p[v->n++] = x;
    return 1;
}

static int is_container(int kind);

/* Collects x for mpc__value_join(): a container outside any group joins
 * (and its children are walked), a member brings its whole group. */
static int join_visit(mpc_value *x, ptrvec *join, ptrvec *stack, ptrvec *groups)
{
    if (!is_container(x->kind))
        return 1;
    if (x->grp) {
        if (x->grp->mark)
            return 1;
        x->grp->mark = 1;
        return pv_push(groups, x->grp);
    }
    if (x->mark)
        return 1;
    x->mark = 1;
    return pv_push(join, x) && pv_push(stack, x);
}

static size_t child_count(const mpc_value *c)
{
    return c->kind == MPC_V_DICT ? 2 * c->u.c.n : c->u.c.n;
}

/* Before c takes item when that may close a cycle (c is a member, or c is
 * inside a container, or item is c): makes c, item and every container
 * reachable from them members of one group, merging the groups met (the
 * smaller into the larger).  Each container joins a group once and is
 * walked then, so building or decoding a value costs linear time overall.
 * 0, or -1 on out of memory with nothing changed. */
static int join(mpc_value *c, mpc_value *item)
{
    ptrvec jn = {0}, st = {0}, gs = {0};
    int ok = join_visit(c, &jn, &st, &gs) && join_visit(item, &jn, &st, &gs);
    while (ok && st.n) {
        mpc_value *x = st.p[--st.n];
        size_t n = child_count(x);
        for (size_t i = 0; i < n && ok; i++)
            ok = join_visit(x->u.c.items[i], &jn, &st, &gs);
    }
    mpc__group *t = NULL;
    size_t total = jn.n;
    for (size_t i = 0; i < gs.n; i++) {
        mpc__group *g = gs.p[i];
        total += g->n;
        if (!t || g->n > t->n)
            t = g;
    }
    /* A new group only for newcomers (c, a container, always brings either
     * itself or its group; when neither, there is nothing to do). */
    if (ok && !t && jn.n) {
        t = calloc(1, sizeof *t);
        ok = t != NULL;
    }
    if (ok && t && total > t->cap) {
        mpc_value **m = realloc(t->m, total * sizeof *m);
        if (m) {
            t->m = m;
            t->cap = total;
        } else {
            ok = 0;
            if (!gs.n)
                free(t);
        }
    }
    for (size_t i = 0; i < jn.n; i++)
        ((mpc_value *)jn.p[i])->mark = 0;
    for (size_t i = 0; i < gs.n; i++)
        ((mpc__group *)gs.p[i])->mark = 0;
    if (ok && t) {
        for (size_t i = 0; i < gs.n; i++) {
            mpc__group *g = gs.p[i];
            if (g == t)
                continue;
            for (size_t k = 0; k < g->n; k++) {
                g->m[k]->grp = t;
                t->m[t->n++] = g->m[k];
            }
            t->ext += g->ext;
            free(g->m);
            free(g);
        }
        for (size_t i = 0; i < jn.n; i++) {
            mpc_value *x = jn.p[i];
            x->grp = t;
            t->m[t->n++] = x;
            t->ext += x->refs;
        }
        /* References between the newcomers and into the group are internal
         * now (the group was closed: its members point only to members). */
        for (size_t i = 0; i < jn.n; i++) {
            mpc_value *x = jn.p[i];
            size_t n = child_count(x);
            for (size_t k = 0; k < n; k++) {
                mpc_value *ch = x->u.c.items[k];
                if (ch->grp == t) {
                    ch->refs--;
                    t->ext--;
                }
            }
        }
    }
    free(jn.p);
    free(st.p);
    free(gs.p);
    return ok ? 0 : -1;
}

/* Whether c taking item may close a cycle, so that both must be in a group. */
static int may_close_cycle(const mpc_value *c, const mpc_value *item)
{
    return c->grp || c->inside || c == item;
}

/* c now holds item: the caller's reference becomes internal to the group. */
static void took(mpc_value *c, mpc_value *item)
{
    item->inside = 1;
    if (c->grp && item->grp == c->grp) {
        item->refs--;
        c->grp->ext--;
    }
}

mpc_value *mpc_value_share(mpc_value *v) { return v ? mpc__value_ref(v) : NULL; }

/* --- accessors --- */

mpc_vkind mpc_value_kind(const mpc_value *v)
{
    return v && v->kind <= MPC_V_FROZENSET ? (mpc_vkind)v->kind : MPC_V_NONE;
}

const char *mpc_vkind_name(mpc_vkind kind)
{
    switch (kind) {
    case MPC_V_NONE: return "NoneType";
    case MPC_V_BOOL: return "bool";
    case MPC_V_INT:
    case MPC_V_BIGINT: return "int";
    case MPC_V_FLOAT: return "float";
    case MPC_V_STR: return "str";
    case MPC_V_BYTES: return "bytes";
    case MPC_V_BYTEARRAY: return "bytearray";
    case MPC_V_LIST: return "list";
    case MPC_V_TUPLE: return "tuple";
    case MPC_V_DICT: return "dict";
    case MPC_V_SET: return "set";
    case MPC_V_FROZENSET: return "frozenset";
    }
    return "unknown";
}

int64_t mpc_value_int(const mpc_value *v)
{
    return v && (v->kind == MPC_V_INT || v->kind == MPC_V_BOOL) ? v->u.i : 0;
}

double mpc_value_float(const mpc_value *v)
{
    if (!v)
        return 0.0;
    if (v->kind == MPC_V_FLOAT)
        return v->u.f;
    if (v->kind == MPC_V_INT || v->kind == MPC_V_BOOL)
        return (double)v->u.i;
    return 0.0;
}

const char *mpc_value_str(const mpc_value *v, size_t *len)
{
    if (v && (v->kind == MPC_V_STR || v->kind == MPC_V_BYTES || v->kind == MPC_V_BYTEARRAY ||
              v->kind == MPC_V_BIGINT)) {
        if (len)
            *len = v->u.s.len;
        return v->u.s.data;
    }
    if (len)
        *len = 0;
    return NULL;
}

size_t mpc_value_len(const mpc_value *v)
{
    if (!v)
        return 0;
    if (is_container(v->kind))
        return v->u.c.n;
    if (v->kind == MPC_V_STR || v->kind == MPC_V_BYTES || v->kind == MPC_V_BYTEARRAY ||
        v->kind == MPC_V_BIGINT)
        return v->u.s.len;
    return 0;
}

mpc_value *mpc_value_item(const mpc_value *v, size_t i)
{
    if (!v || !is_container(v->kind) || v->kind == MPC_V_DICT || i >= v->u.c.n)
        return NULL;
    return v->u.c.items[i];
}

mpc_value *mpc_value_dict_key(const mpc_value *v, size_t i)
{
    if (!v || v->kind != MPC_V_DICT || i >= v->u.c.n)
        return NULL;
    return v->u.c.items[2 * i];
}

mpc_value *mpc_value_dict_val(const mpc_value *v, size_t i)
{
    if (!v || v->kind != MPC_V_DICT || i >= v->u.c.n)
        return NULL;
    return v->u.c.items[2 * i + 1];
}

/* --- hashing and equality --- */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t hash_bytes(const char *s, size_t n, uint64_t tag)
{
    uint64_t h = 1469598103934665603ull ^ tag;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return mix64(h);
}

#define TAG_BIGINT 0x1111ull
#define TAG_STR 0x2222ull
#define TAG_BYTES 0x3333ull

/* Decimal text of an integral double outside the int64 range, as BIGINT
 * stores it; the shortest exact text, because such doubles are integers. */
static void float_int_text(double f, char *buf, size_t cap) { snprintf(buf, cap, "%.0f", f); }

static int float_fits_int64(double f)
{
    return isfinite(f) && f == floor(f) && f >= -9223372036854775808.0 &&
           f < 9223372036854775808.0;
}

/* depth: tuples nested around v; a tuple may reach itself through tuples
 * only when built so through the C API, which this bound stops. */
static int hashable_at(mpc_value *v, unsigned depth)
{
    if (v->hash_state)
        return v->hash_state == 1;
    uint64_t h = 0;
    int ok = 1;
    switch (v->kind) {
    case MPC_V_NONE: h = mix64(0x4e6f6e65ull); break;
    case MPC_V_BOOL:
    case MPC_V_INT: h = mix64((uint64_t)v->u.i); break;
    case MPC_V_FLOAT: {
        double f = v->u.f;
        if (float_fits_int64(f)) {
            h = mix64((uint64_t)(int64_t)f);
        } else if (isfinite(f) && f == floor(f)) {
            char buf[400];
            float_int_text(f, buf, sizeof buf);
            h = hash_bytes(buf, strlen(buf), TAG_BIGINT);
        } else {
            uint64_t bits;
            memcpy(&bits, &f, sizeof bits);
            h = mix64(bits ^ 0x466c6f6174ull);
        }
        break;
    }
    case MPC_V_BIGINT: h = hash_bytes(v->u.s.data, v->u.s.len, TAG_BIGINT); break;
    case MPC_V_STR: h = hash_bytes(v->u.s.data, v->u.s.len, TAG_STR); break;
    case MPC_V_BYTES: h = hash_bytes(v->u.s.data, v->u.s.len, TAG_BYTES); break;
    case MPC_V_TUPLE:
        h = mix64(0x5475706c65ull + v->u.c.n);
        for (size_t i = 0; i < v->u.c.n && ok; i++) {
            mpc_value *it = v->u.c.items[i];
            if (depth >= MPC_VALUE_DEPTH_MAX || !hashable_at(it, depth + 1))
                ok = 0;
            else
                h = mix64(h * 31 + it->hash);
        }
        break;
    case MPC_V_FROZENSET:
        /* Order-independent; elements are hashable by construction. */
        h = 0x46726f7a656eull;
        for (size_t i = 0; i < v->u.c.n; i++)
            h += mix64(v->u.c.items[i]->hash);
        h = mix64(h);
        break;
    default: ok = 0; break;
    }
    v->hash = h;
    v->hash_state = ok ? 1 : 2;
    return ok;
}

int mpc__value_hashable(mpc_value *v) { return hashable_at(v, 0); }

static int is_number(int k) { return k == MPC_V_BOOL || k == MPC_V_INT || k == MPC_V_BIGINT || k == MPC_V_FLOAT; }

static int numbers_equal(const mpc_value *a, const mpc_value *b)
{
    if (a->kind == MPC_V_FLOAT && b->kind != MPC_V_FLOAT) {
        const mpc_value *t = a;
        a = b;
        b = t;
    }
    /* Now if exactly one is a float, it is b. */
    if (a->kind == MPC_V_FLOAT)
        return a->u.f == b->u.f;
    if (a->kind == MPC_V_BIGINT) {
        if (b->kind == MPC_V_BIGINT)
            return a->u.s.len == b->u.s.len && memcmp(a->u.s.data, b->u.s.data, a->u.s.len) == 0;
        if (b->kind == MPC_V_FLOAT) {
            double f = b->u.f;
            if (!isfinite(f) || f != floor(f) || float_fits_int64(f))
                return 0;
            char buf[400];
            float_int_text(f, buf, sizeof buf);
            return strlen(buf) == a->u.s.len && memcmp(buf, a->u.s.data, a->u.s.len) == 0;
        }
        return 0; /* BIGINT is never within int64 */
    }
    if (b->kind == MPC_V_BIGINT)
        return 0;
    if (b->kind == MPC_V_FLOAT)
        return float_fits_int64(b->u.f) && (int64_t)b->u.f == a->u.i;
    return a->u.i == b->u.i;
}

static long find_in(const mpc_value *c, mpc_value *key);

/* Equality walks pairs of containers.  After EQ_PLAIN_STEPS of them it
 * records every pair it enters and takes a pair met again as equal (it is
 * being compared, or was found equal: any difference ends the walk at
 * once), so that cycles terminate and shared sub-trees are compared once
 * per pair.  A walk deeper than MPC_VALUE_DEPTH_MAX, or out of memory for
 * the record, answers "not equal". */
#define EQ_PLAIN_STEPS 64

typedef struct eqctx {
    const mpc_value **pairs; /* open addressing, two pointers a slot */
    size_t cap, n;           /* slots, pairs recorded */
    size_t steps;
    unsigned depth;
} eqctx;

static size_t pair_slot(const eqctx *x, const mpc_value *a, const mpc_value *b)
{
    uint64_t h = (uint64_t)(uintptr_t)a * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)b;
    h = mix64(h);
    size_t i = (size_t)h & (x->cap - 1);
    while (x->pairs[2 * i] && (x->pairs[2 * i] != a || x->pairs[2 * i + 1] != b))
        i = (i + 1) & (x->cap - 1);
    return i;
}

/* 1 if (a, b) was recorded before (now recorded), 0 if new, -1 on out of
 * memory. */
static int pair_seen(eqctx *x, const mpc_value *a, const mpc_value *b)
{
    if ((x->n + 1) * 2 > x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 256;
        const mpc_value **old = x->pairs;
        size_t ocap = x->cap;
        x->pairs = calloc(2 * nc, sizeof *x->pairs);
        if (!x->pairs) {
            x->pairs = old;
            return -1;
        }
        x->cap = nc;
        for (size_t i = 0; i < ocap; i++) {
            if (!old[2 * i])
                continue;
            size_t s = pair_slot(x, old[2 * i], old[2 * i + 1]);
            x->pairs[2 * s] = old[2 * i];
            x->pairs[2 * s + 1] = old[2 * i + 1];
        }
        free(old);
    }
    size_t s = pair_slot(x, a, b);
    if (x->pairs[2 * s])
        return 1;
    x->pairs[2 * s] = a;
    x->pairs[2 * s + 1] = b;
    x->n++;
    return 0;
}

static int equal_in(eqctx *x, const mpc_value *a, const mpc_value *b);

static int equal(const mpc_value *a, const mpc_value *b)
{
    eqctx x;
    memset(&x, 0, sizeof x);
    int r = equal_in(&x, a, b);
    free(x.pairs);
    return r;
}

/* Compares the children of two containers of the same shape. */
static int equal_children(eqctx *x, const mpc_value *a, const mpc_value *b)
{
    if (a->u.c.n != b->u.c.n)
        return 0;
    if (x->depth >= MPC_VALUE_DEPTH_MAX)
        return 0;
    if (++x->steps > EQ_PLAIN_STEPS) {
        int seen = pair_seen(x, a, b);
        if (seen)
            return seen > 0;
    }
    x->depth++;
    int r = 1;
    if (a->kind == MPC_V_DICT) {
        for (size_t i = 0; i < a->u.c.n && r; i++) {
            long j = find_in(b, a->u.c.items[2 * i]);
            r = j >= 0 && equal_in(x, a->u.c.items[2 * i + 1], b->u.c.items[2 * (size_t)j + 1]);
        }
    } else {
        for (size_t i = 0; i < a->u.c.n && r; i++)
            r = equal_in(x, a->u.c.items[i], b->u.c.items[i]);
    }
    x->depth--;
    return r;
}

static int equal_in(eqctx *x, const mpc_value *a, const mpc_value *b)
{
    if (a == b)
        return 1;
    if (is_number(a->kind) && is_number(b->kind))
        return numbers_equal(a, b);
    int ka = a->kind, kb = b->kind;
    int bytes_a = ka == MPC_V_BYTES || ka == MPC_V_BYTEARRAY;
    int bytes_b = kb == MPC_V_BYTES || kb == MPC_V_BYTEARRAY;
    int set_a = ka == MPC_V_SET || ka == MPC_V_FROZENSET;
    int set_b = kb == MPC_V_SET || kb == MPC_V_FROZENSET;
    if (bytes_a && bytes_b)
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.data, b->u.s.data, a->u.s.len) == 0;
    if (set_a && set_b) {
        /* Elements are hashable, so this cannot reach a cycle. */
        if (a->u.c.n != b->u.c.n)
            return 0;
        for (size_t i = 0; i < a->u.c.n; i++)
            if (find_in(b, a->u.c.items[i]) < 0)
                return 0;
        return 1;
    }
    if (ka != kb)
        return 0;
    switch (ka) {
    case MPC_V_NONE: return 1;
    case MPC_V_STR:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.data, b->u.s.data, a->u.s.len) == 0;
    case MPC_V_LIST:
    case MPC_V_TUPLE:
    case MPC_V_DICT: return equal_children(x, a, b);
    default: return 0;
    }
}

int mpc_value_equal(const mpc_value *a, const mpc_value *b)
{
    if (!a || !b)
        return a == b;
    return equal(a, b);
}

static mpc_value *key_at(const mpc_value *c, size_t i)
{
    return c->kind == MPC_V_DICT ? c->u.c.items[2 * i] : c->u.c.items[i];
}

/* Position of an element equal to key in a dict/set, or -1.  key must be
 * hashable (its hash computed). */
static long find_in(const mpc_value *c, mpc_value *key)
{
    if (!mpc__value_hashable(key))
        return -1;
    if (!c->u.c.index) {
        for (size_t i = 0; i < c->u.c.n; i++) {
            mpc_value *k = key_at(c, i);
            if (k->hash == key->hash && equal(k, key))
                return (long)i;
        }
        return -1;
    }
    size_t mask = c->u.c.index_cap - 1;
    for (size_t s = key->hash & mask;; s = (s + 1) & mask) {
        uint32_t slot = c->u.c.index[s];
        if (!slot)
            return -1;
        mpc_value *k = key_at(c, slot - 1);
        if (k->hash == key->hash && equal(k, key))
            return (long)(slot - 1);
    }
}

static void index_insert(mpc_value *c, size_t pos)
{
    size_t mask = c->u.c.index_cap - 1;
    size_t s = key_at(c, pos)->hash & mask;
    while (c->u.c.index[s])
        s = (s + 1) & mask;
    c->u.c.index[s] = (uint32_t)(pos + 1);
}

/* Makes room for one more element (and its index slot). */
static int grow(mpc_value *c)
{
    size_t per = c->kind == MPC_V_DICT ? 2 : 1;
    if (c->u.c.n >= UINT32_MAX - 2)
        return 0;
    if ((c->u.c.n + 1) * per > c->u.c.cap) {
        size_t ncap = c->u.c.cap ? c->u.c.cap * 2 : 4 * per;
        mpc_value **p = realloc(c->u.c.items, ncap * sizeof *p);
        if (!p)
            return 0;
        c->u.c.items = p;
        c->u.c.cap = ncap;
    }
    if (c->kind == MPC_V_DICT || c->kind == MPC_V_SET || c->kind == MPC_V_FROZENSET) {
        size_t want = c->u.c.n + 1;
        if (want >= INDEX_MIN_ITEMS && want * 2 > c->u.c.index_cap) {
            size_t ncap = c->u.c.index_cap ? c->u.c.index_cap * 2 : 32;
            while (want * 2 > ncap)
                ncap *= 2;
            uint32_t *idx = calloc(ncap, sizeof *idx);
            if (!idx)
                return 0;
            free(c->u.c.index);
            c->u.c.index = idx;
            c->u.c.index_cap = ncap;
            for (size_t i = 0; i < c->u.c.n; i++)
                index_insert(c, i);
        }
    }
    return 1;
}

/* Forms or extends a group when c taking item may close a cycle; 0 on out
 * of memory. */
static int link_ok(mpc_value *c, mpc_value *item)
{
    if (!is_container(item->kind) || !may_close_cycle(c, item) ||
        (c->grp && item->grp == c->grp))
        return 1;
    return join(c, item) == 0;
}

static mpc_status check_target(mpc_value *c, mpc_value *item, int k1, int k2, mpc_error *err)
{
    if (!c || !item)
        return mpc__error(err, MPC_INVAL, 0, "NULL value");
    if (c->kind != k1 && c->kind != k2)
        return mpc__error(err, MPC_INVAL, 0, "cannot add an item to a %s",
                          mpc_vkind_name(mpc_value_kind(c)));
    if (!mpc__value_can_modify(c))
        return mpc__error(err, MPC_INVAL, 0,
                          "a %s that is inside another container cannot be modified",
                          mpc_vkind_name(mpc_value_kind(c)));
    if (item == c && c->kind == MPC_V_TUPLE)
        return mpc__error(err, MPC_INVAL, 0, "a tuple cannot contain itself");
    if (item->kind > MPC_V_FROZENSET)
        return mpc__error(err, MPC_INVAL, 0, "not a value");
    return MPC_OK;
}

static mpc_status check_depth(const mpc_value *c, const mpc_value *item, uint32_t max_depth,
                              uint32_t *height, mpc_error *err)
{
    uint32_t h = item->height + 1 > c->height ? item->height + 1 : c->height;
    if (h > max_depth)
        return mpc__error(err, MPC_VALUE, 0, "nesting deeper than %u", (unsigned)max_depth);
    *height = h;
    return MPC_OK;
}

mpc_status mpc__value_append(mpc_value *seq, mpc_value *item, uint32_t max_depth, mpc_error *err)
{
    uint32_t h = 0;
    mpc_status st = check_target(seq, item, MPC_V_LIST, MPC_V_TUPLE, err);
    if (st || (st = check_depth(seq, item, max_depth, &h, err)))
        return st;
    if (!link_ok(seq, item) || !grow(seq))
        return mpc__error(err, MPC_NOMEM, 0, "out of memory");
    seq->u.c.items[seq->u.c.n++] = item;
    seq->height = h;
    if (seq->hash_state != 2)
        seq->hash_state = 0;
    took(seq, item);
    return MPC_OK;
}

mpc_status mpc__value_set_add(mpc_value *set, mpc_value *item, uint32_t max_depth, mpc_error *err)
{
    uint32_t h = 0;
    mpc_status st = check_target(set, item, MPC_V_SET, MPC_V_FROZENSET, err);
    if (st || (st = check_depth(set, item, max_depth, &h, err)))
        return st;
    if (!mpc__value_hashable(item))
        return mpc__error(err, MPC_VALUE, 0, "unhashable type: '%s'",
                          mpc_vkind_name(mpc_value_kind(item)));
    if (find_in(set, item) >= 0) {
        mpc_value_free(item);
        return MPC_OK;
    }
    if (!link_ok(set, item) || !grow(set))
        return mpc__error(err, MPC_NOMEM, 0, "out of memory");
    set->u.c.items[set->u.c.n] = item;
    if (set->u.c.index)
        index_insert(set, set->u.c.n);
    set->u.c.n++;
    set->height = h;
    set->hash_state = 0;
    took(set, item);
    return MPC_OK;
}

mpc_status mpc__value_dict_set(mpc_value *d, mpc_value *key, mpc_value *val, uint32_t max_depth,
                               mpc_error *err)
{
    uint32_t h1 = 0, h2 = 0;
    mpc_status st = check_target(d, key, MPC_V_DICT, MPC_V_DICT, err);
    if (st || (st = check_target(d, val, MPC_V_DICT, MPC_V_DICT, err)))
        return st;
    if ((st = check_depth(d, key, max_depth, &h1, err)) ||
        (st = check_depth(d, val, max_depth, &h2, err)))
        return st;
    if (!mpc__value_hashable(key))
        return mpc__error(err, MPC_VALUE, 0, "unhashable type: '%s'",
                          mpc_vkind_name(mpc_value_kind(key)));
    long at = find_in(d, key);
    if (at >= 0) {
        if (!link_ok(d, val))
            return mpc__error(err, MPC_NOMEM, 0, "out of memory");
        mpc_value **slot = &d->u.c.items[2 * (size_t)at + 1];
        /* An old value inside the group stays until the group goes. */
        if (!d->grp || (*slot)->grp != d->grp)
            mpc_value_free(*slot);
        *slot = val;
        mpc_value_free(key);
    } else {
        /* The value first: when it is d itself, d forms its group here, and
         * the key (a tuple, say) must then join it too; left outside, its
         * reference from d would count as external once it joined later. */
        if (!link_ok(d, val) || !link_ok(d, key) || !grow(d))
            return mpc__error(err, MPC_NOMEM, 0, "out of memory");
        d->u.c.items[2 * d->u.c.n] = key;
        d->u.c.items[2 * d->u.c.n + 1] = val;
        if (d->u.c.index)
            index_insert(d, d->u.c.n);
        d->u.c.n++;
        took(d, key);
    }
    took(d, val);
    d->height = h1 > h2 ? h1 : h2;
    return MPC_OK;
}

mpc_status mpc_value_append(mpc_value *seq, mpc_value *item)
{
    return mpc__value_append(seq, item, MPC_VALUE_DEPTH_MAX, NULL);
}

mpc_status mpc_value_set_add(mpc_value *set, mpc_value *item)
{
    return mpc__value_set_add(set, item, MPC_VALUE_DEPTH_MAX, NULL);
}

mpc_status mpc_value_dict_set(mpc_value *d, mpc_value *key, mpc_value *val)
{
    return mpc__value_dict_set(d, key, val, MPC_VALUE_DEPTH_MAX, NULL);
}

mpc_value *mpc_value_dict_get(const mpc_value *d, const mpc_value *key)
{
    if (!d || !key || d->kind != MPC_V_DICT)
        return NULL;
    /* Hashing caches into the key node; the key is logically unchanged. */
    long at = find_in(d, (mpc_value *)key);
    return at < 0 ? NULL : d->u.c.items[2 * (size_t)at + 1];
}

mpc_value *mpc_value_dict_get_str(const mpc_value *d, const char *key, size_t len)
{
    mpc_value k;
    if (!d || !key || d->kind != MPC_V_DICT)
        return NULL;
    memset(&k, 0, sizeof k);
    k.kind = MPC_V_STR;
    k.refs = 1;
    k.height = 1;
    k.u.s.data = (char *)key;
    k.u.s.len = len;
    long at = find_in(d, &k);
    return at < 0 ? NULL : d->u.c.items[2 * (size_t)at + 1];
}
