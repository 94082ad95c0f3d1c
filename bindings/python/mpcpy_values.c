/*
 * mpcpy_values.c - restricted unpickling for Python: recv(restricted=True).
 *
 * The pickle is decoded by the core's allow-list decoder, mpc_value_decode()
 * (the one C, the CLI and Lua use: nothing is imported or called, only the
 * constructors CPython writes for sets, frozensets, bytes and bytearrays are
 * accepted, every length is checked against the message), into an mpc_value
 * tree; one walk of the tree then builds the Python objects.  Only builtin
 * types are made (None, bool, int, float, str, bytes, bytearray, list,
 * tuple, dict, set, frozenset), so no Python code runs: hashing and
 * comparing dict keys and set elements of these types calls none.
 *
 * Sharing and cycles are kept as pickle.loads() makes them: the tree shares
 * a node wherever the pickle's memo (or DUP) refers to one object again, and
 * mpc_value_shared() names those nodes (and the containers on a cycle); the
 * walk keeps a memo from node to object for them only, and records a list,
 * tuple or dict there before converting its items, so a cycle back to it
 * finds it.  Sets and frozensets cannot be on a cycle (their elements are
 * hashable, so contain no list or dict): they are recorded when complete.
 *
 * Objects under construction stay valid at every moment: a list or tuple is
 * made full of None and its items replaced one by one, so a garbage
 * collection triggered by an allocation (and a finalizer it runs, which may
 * find the object through gc.get_objects()) never sees a NULL item.
 *
 * Errors: a refused or malformed pickle raises the state's
 * RestrictedPickleError (a pickle.UnpicklingError) with the decoder's
 * message, which names the opcode, the global if any and the byte offset;
 * out of memory raises MemoryError; a path through a cycle longer than
 * MPC_VALUE_DEPTH_MAX (only a hand-made pickle has one) raises
 * RestrictedPickleError instead of recursing without bound.
 */
#include "mpcpy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Messages at least this long are decoded into the tree with the GIL
 * released (the decode is pure C and touches no Python object). */
#define MPCPY_DECODE_NOGIL_MIN (64 * 1024)

typedef struct {
    const mpc_value *node;
    PyObject *obj; /* strong reference */
} mpcpy_memo_slot;

typedef struct {
    const mpcpy_state *st;
    mpcpy_memo_slot *memo; /* open addressing, a power of two slots */
    size_t cap, n;
    int depth; /* containers being converted */
} mpcpy_tov;

static PyObject *mpcpy_restricted_error(const mpcpy_state *s, const char *msg)
{
    PyObject *cls = s && s->restricted_error ? s->restricted_error : PyExc_ValueError;
    PyObject *m = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    if (m) {
        PyErr_SetObject(cls, m);
        Py_DECREF(m);
    }
    return NULL;
}

/* ------------------------------------------------------------------ memo */

static size_t mpcpy_memo_hash(const mpc_value *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static size_t mpcpy_memo_slot_of(const mpcpy_tov *x, const mpc_value *v)
{
    size_t i = mpcpy_memo_hash(v, x->cap);
    while (x->memo[i].node && x->memo[i].node != v)
        i = (i + 1) & (x->cap - 1);
    return i;
}

/* The object already made for v (borrowed), or NULL. */
static PyObject *mpcpy_memo_get(const mpcpy_tov *x, const mpc_value *v)
{
    if (!x->cap)
        return NULL;
    return x->memo[mpcpy_memo_slot_of(x, v)].obj;
}

/* Records o (a new strong reference is taken) as the object of v.  0, or
 * -1 with MemoryError. */
static int mpcpy_memo_put(mpcpy_tov *x, const mpc_value *v, PyObject *o)
{
    size_t i;
    if ((x->n + 1) * 2 > x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 64, oc = x->cap;
        mpcpy_memo_slot *old = x->memo;
        mpcpy_memo_slot *nw = PyMem_Calloc(nc, sizeof *nw);
        if (!nw) {
            PyErr_NoMemory();
            return -1;
        }
        x->memo = nw;
        x->cap = nc;
        for (i = 0; i < oc; i++)
            if (old[i].node)
                x->memo[mpcpy_memo_slot_of(x, old[i].node)] = old[i];
        PyMem_Free(old);
    }
    i = mpcpy_memo_slot_of(x, v);
    x->memo[i].node = v;
    Py_INCREF(o);
    x->memo[i].obj = o;
    x->n++;
    return 0;
}

static void mpcpy_memo_release(mpcpy_tov *x)
{
    size_t i;
    for (i = 0; i < x->cap; i++)
        Py_XDECREF(x->memo[i].obj);
    PyMem_Free(x->memo);
    x->memo = NULL;
    x->cap = x->n = 0;
}

/* --------------------------------------------------------------- scalars */

/* An int from the tree's decimal text "[-]digits" (beyond int64): the
 * digits are converted to binary here, nine at a time, so the conversion
 * does not depend on sys.set_int_max_str_digits() (pickle.loads() of a
 * binary LONG does not either). */
static PyObject *mpcpy_bigint(const mpcpy_tov *x, const char *s, size_t n)
{
    static const uint32_t pow10[10] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                       100000000, 1000000000};
    int neg = 0;
    size_t i, j, nw = 0, cap;
    uint32_t *w;
    unsigned char *b;
    PyObject *r;
    if (n && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        s++;
        n--;
    }
    if (n == 0)
        return mpcpy_restricted_error(x->st, "malformed integer in the decoded value");
    cap = n / 9 + 2;
    w = PyMem_Calloc(cap, sizeof *w);
    b = PyMem_Malloc(cap * 4);
    if (!w || !b) {
        PyMem_Free(w);
        PyMem_Free(b);
        return PyErr_NoMemory();
    }
    for (i = 0; i < n;) {
        size_t take = i == 0 && n % 9 ? n % 9 : 9;
        uint64_t carry = 0, mul = pow10[take];
        for (j = 0; j < take; j++) {
            unsigned d = (unsigned char)s[i + j] - '0';
            if (d > 9) {
                PyMem_Free(w);
                PyMem_Free(b);
                return mpcpy_restricted_error(x->st, "malformed integer in the decoded value");
            }
            carry = carry * 10 + d;
        }
        for (j = 0; j < nw; j++) {
            uint64_t t = (uint64_t)w[j] * mul + carry;
            w[j] = (uint32_t)t;
            carry = t >> 32;
        }
        if (carry)
            w[nw++] = (uint32_t)carry;
        i += take;
    }
    for (j = 0; j < nw; j++) {
        b[4 * j] = (unsigned char)w[j];
        b[4 * j + 1] = (unsigned char)(w[j] >> 8);
        b[4 * j + 2] = (unsigned char)(w[j] >> 16);
        b[4 * j + 3] = (unsigned char)(w[j] >> 24);
    }
    r = _PyLong_FromByteArray(b, nw * 4, 1, 0);
    PyMem_Free(w);
    PyMem_Free(b);
    if (r && neg) {
        PyObject *m = PyNumber_Negative(r);
        Py_DECREF(r);
        r = m;
    }
    return r;
}

/* ------------------------------------------------------------ containers */

static PyObject *mpcpy_tov_push(mpcpy_tov *x, const mpc_value *v);

/* A list or tuple of n Nones (items replaced by the caller). */
static PyObject *mpcpy_nones(mpc_vkind k, Py_ssize_t n)
{
    Py_ssize_t i;
    PyObject *o = k == MPC_V_LIST ? PyList_New(n) : PyTuple_New(n);
    if (!o)
        return NULL;
    for (i = 0; i < n; i++) {
        Py_INCREF(Py_None);
        if (k == MPC_V_LIST)
            PyList_SET_ITEM(o, i, Py_None);
        else
            PyTuple_SET_ITEM(o, i, Py_None);
    }
    return o;
}

static PyObject *mpcpy_tov_container(mpcpy_tov *x, const mpc_value *v, mpc_vkind k, int shared)
{
    size_t i, n = mpc_value_len(v);
    PyObject *o, *item, *key;
    if (n > (size_t)PY_SSIZE_T_MAX / 2)
        return PyErr_NoMemory();
    if (x->depth >= MPC_VALUE_DEPTH_MAX)
        return mpcpy_restricted_error(x->st, "nesting deeper than 2000 levels through a cycle");
    switch (k) {
    case MPC_V_LIST:
    case MPC_V_TUPLE:
        o = mpcpy_nones(k, (Py_ssize_t)n);
        break;
    case MPC_V_DICT: o = _PyDict_NewPresized((Py_ssize_t)n); break;
    case MPC_V_SET: o = PySet_New(NULL); break;
    default: o = PyFrozenSet_New(NULL); break;
    }
    if (!o)
        return NULL;
    /* Recorded before the items (a cycle back to it finds it), except a
     * frozenset: PySet_Add() fills only one nobody else holds, and it
     * cannot be on a cycle. */
    if (shared && k != MPC_V_FROZENSET && mpcpy_memo_put(x, v, o) < 0)
        goto fail;
    x->depth++;
    for (i = 0; i < n; i++) {
        switch (k) {
        case MPC_V_LIST:
        case MPC_V_TUPLE:
            if (!(item = mpcpy_tov_push(x, mpc_value_item(v, i))))
                goto fail_in;
            if (k == MPC_V_LIST) {
                PyList_SET_ITEM(o, (Py_ssize_t)i, item);
            } else {
                PyTuple_SET_ITEM(o, (Py_ssize_t)i, item);
            }
            Py_DECREF(Py_None); /* the placeholder */
            break;
        case MPC_V_DICT: {
            int rc;
            if (!(key = mpcpy_tov_push(x, mpc_value_dict_key(v, i))))
                goto fail_in;
            if (!(item = mpcpy_tov_push(x, mpc_value_dict_val(v, i)))) {
                Py_DECREF(key);
                goto fail_in;
            }
            rc = PyDict_SetItem(o, key, item);
            Py_DECREF(key);
            Py_DECREF(item);
            if (rc < 0)
                goto fail_in;
            break;
        }
        default: {
            int rc;
            if (!(item = mpcpy_tov_push(x, mpc_value_item(v, i))))
                goto fail_in;
            rc = PySet_Add(o, item);
            Py_DECREF(item);
            if (rc < 0)
                goto fail_in;
            break;
        }
        }
    }
    x->depth--;
    if (shared && k == MPC_V_FROZENSET && mpcpy_memo_put(x, v, o) < 0)
        goto fail;
    return o;
fail_in:
    x->depth--;
fail:
    Py_DECREF(o);
    return NULL;
}

/* A new reference to the Python object of node v, or NULL with an
 * exception set. */
static PyObject *mpcpy_tov_push(mpcpy_tov *x, const mpc_value *v)
{
    mpc_vkind k = mpc_value_kind(v);
    const char *s;
    size_t n = 0;
    int shared;
    PyObject *o;
    switch (k) {
    case MPC_V_NONE: Py_RETURN_NONE;
    case MPC_V_BOOL: return PyBool_FromLong((long)mpc_value_int(v));
    default: break;
    }
    shared = mpc_value_shared(v);
    if (shared && (o = mpcpy_memo_get(x, v)) != NULL) {
        Py_INCREF(o);
        return o;
    }
    switch (k) {
    case MPC_V_INT: o = PyLong_FromLongLong((long long)mpc_value_int(v)); break;
    case MPC_V_FLOAT: o = PyFloat_FromDouble(mpc_value_float(v)); break;
    case MPC_V_BIGINT:
        s = mpc_value_str(v, &n);
        o = mpcpy_bigint(x, s, n);
        break;
    case MPC_V_STR:
        s = mpc_value_str(v, &n);
        /* The tree's str is UTF-8 with lone surrogates allowed, as pickle's
         * BINUNICODE is decoded by CPython. */
        o = PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "surrogatepass");
        break;
    case MPC_V_BYTES:
        s = mpc_value_str(v, &n);
        o = PyBytes_FromStringAndSize(s, (Py_ssize_t)n);
        break;
    case MPC_V_BYTEARRAY:
        s = mpc_value_str(v, &n);
        o = PyByteArray_FromStringAndSize(s, (Py_ssize_t)n);
        break;
    case MPC_V_LIST:
    case MPC_V_TUPLE:
    case MPC_V_DICT:
    case MPC_V_SET:
    case MPC_V_FROZENSET:
        /* (records itself in the memo) */
        return mpcpy_tov_container(x, v, k, shared);
    default:
        PyErr_Format(PyExc_SystemError, "mpconn: unexpected value kind %d", (int)k);
        return NULL;
    }
    if (o && shared && mpcpy_memo_put(x, v, o) < 0)
        Py_CLEAR(o);
    return o;
}

/* --------------------------------------------------------------- entry */

PyObject *mpcpy_restricted_loads(const mpcpy_state *s, const void *data, size_t len,
                                 int may_release_gil)
{
    mpc_decode_options o;
    mpc_value *tree = NULL;
    mpc_error e;
    mpc_status st;
    mpcpy_tov x;
    PyObject *r;
    memset(&o, 0, sizeof o);
    memset(&e, 0, sizeof e);
    if (may_release_gil && len >= MPCPY_DECODE_NOGIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        st = mpc_value_decode(data, len, &o, &tree, &e);
        Py_END_ALLOW_THREADS
    } else {
        st = mpc_value_decode(data, len, &o, &tree, &e);
    }
    if (st == MPC_NOMEM)
        return PyErr_NoMemory();
    if (st != MPC_OK)
        return mpcpy_restricted_error(s, e.message[0] ? e.message : mpc_strerror(st));
    memset(&x, 0, sizeof x);
    x.st = s;
    r = mpcpy_tov_push(&x, tree);
    mpcpy_memo_release(&x);
    mpc_value_free(tree);
    return r;
}
