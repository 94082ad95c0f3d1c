/*
 * mpcpy_values.c - restricted unpickling for Python: recv(restricted=True).
 *
 * The pickle is decoded by the core's allow-list decoder (the one C, the
 * CLI and Lua use) through mpc_value_decode_with() with the builder below,
 * which makes the Python objects directly: the decoder runs the opcode
 * machine, accepts only the globals and REDUCE shapes CPython writes for
 * sets, frozensets, bytes and bytearrays, checks every length against the
 * message, keeps the memo and bounds the nesting (MPC_VALUE_DEPTH_DEFAULT,
 * from the heights of what it built); the builder makes None, bool, int,
 * float, str, bytes, bytearray, list, tuple, dict, set and frozenset and
 * nothing else.  As the decoder mirrors CPython's unpickler and the memo
 * holds the objects themselves, sharing and cycles come out exactly as
 * pickle.loads() makes them (one object per memoized object; a list that
 * contains itself).
 *
 * No Python code runs: hashing and comparing dict keys and set elements of
 * these builtin types calls none, and no object of another type is ever
 * made.  (A garbage collection that an allocation triggers may run
 * finalizers of unrelated objects, as during pickle.loads(); every object
 * the builder hands out is complete and consistent at every moment, and
 * the decoder keeps its own references to what it still uses and reads
 * only immutable str and bytes data, so such code can do no harm here.)
 *
 * Errors: a refused or malformed pickle raises the state's
 * RestrictedPickleError (a pickle.UnpicklingError) with the decoder's
 * message, which names the opcode, the global if any and the byte offset
 * ("refused opcode STACK_GLOBAL of global 'posix.system' at offset 28",
 * "SETITEMS: unhashable type: 'list' at offset 9"); out of memory raises
 * MemoryError.  A failure of the builder itself (an unhashable key, a
 * string that is not UTF-8) is handed to the decoder as its message, with
 * the Python exception cleared.
 */
#include "mpcpy.h"

#include <stdint.h>
#include <string.h>

/* The Python exception just raised, as the builder's failure: MemoryError
 * is MPC_NOMEM, anything else MPC_VALUE with the exception's text. */
static void *mpcpy_b_fail(mpc_error *err)
{
    PyObject *exc, *text = NULL;
    const char *s = NULL;
#if PY_VERSION_HEX >= 0x030C0000
    exc = PyErr_GetRaisedException();
#else
    PyObject *type, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
#endif
    memset(err, 0, sizeof *err);
    if (exc && PyErr_GivenExceptionMatches(exc, PyExc_MemoryError)) {
        err->status = MPC_NOMEM;
        strcpy(err->message, "out of memory");
    } else {
        err->status = MPC_VALUE;
        if (exc && (text = PyObject_Str(exc)) != NULL)
            s = PyUnicode_AsUTF8(text);
        snprintf(err->message, sizeof err->message, "%s", s ? s : "failed");
    }
    Py_XDECREF(text);
    Py_XDECREF(exc);
    PyErr_Clear();
    return NULL;
}

static void *mpcpy_b_scalar(void *ctx, mpc_vkind kind, int64_t i, double f, mpc_error *err)
{
    PyObject *o;
    (void)ctx;
    switch (kind) {
    case MPC_V_NONE:
        Py_INCREF(Py_None);
        return Py_None;
    case MPC_V_BOOL: return PyBool_FromLong(i != 0);
    case MPC_V_INT: o = PyLong_FromLongLong((long long)i); break;
    default: o = PyFloat_FromDouble(f); break;
    }
    return o ? (void *)o : mpcpy_b_fail(err);
}

static void *mpcpy_b_bigint(void *ctx, const unsigned char *data, size_t len, int text,
                            mpc_error *err)
{
    PyObject *o;
    (void)ctx;
    if (text) {
        /* As pickle.loads() reads INT and LONG: int(text), within
         * sys.get_int_max_str_digits(). */
        char *buf = PyMem_Malloc(len + 1);
        if (!buf) {
            PyErr_NoMemory();
            return mpcpy_b_fail(err);
        }
        memcpy(buf, data, len);
        buf[len] = '\0';
        o = PyLong_FromString(buf, NULL, 10);
        PyMem_Free(buf);
    } else {
        /* LONG1/LONG4: binary, any size, as pickle.loads() reads it. */
        o = _PyLong_FromByteArray(data, len, 1, 1);
    }
    return o ? (void *)o : mpcpy_b_fail(err);
}

/* Whether s[0..n) is all ASCII (a word at a time: most strs of a message
 * are short ASCII). */
static int mpcpy_ascii(const unsigned char *s, size_t n)
{
    uint64_t acc = 0, w;
    uint32_t h;
    size_t i;
    if (n >= 8) {
        for (i = 0; i + 8 <= n; i += 8) {
            memcpy(&w, s + i, 8);
            acc |= w;
        }
        memcpy(&w, s + n - 8, 8); /* (the tail, overlapping) */
        acc |= w;
    } else if (n >= 4) {
        memcpy(&h, s, 4);
        acc = h;
        memcpy(&h, s + n - 4, 4);
        acc |= h;
    } else {
        for (i = 0; i < n; i++)
            acc |= s[i];
    }
    return !(acc & 0x8080808080808080ull);
}

static void *mpcpy_b_buffer(void *ctx, mpc_vkind kind, const void *data, size_t len,
                            mpc_error *err)
{
    PyObject *o;
    (void)ctx;
    if (len > (size_t)PY_SSIZE_T_MAX) {
        PyErr_NoMemory();
        return mpcpy_b_fail(err);
    }
    switch (kind) {
    case MPC_V_STR:
        if (len >= 2 && mpcpy_ascii(data, len)) {
            /* What PyUnicode_DecodeUTF8() makes of ASCII (a compact ASCII
             * str), without its layers.  (Below 2 characters it gives the
             * interpreter's shared strs, as pickle.loads() does: below.) */
            o = PyUnicode_New((Py_ssize_t)len, 127);
            if (o)
                memcpy(PyUnicode_1BYTE_DATA(o), data, len);
            break;
        }
        /* pickle's BINUNICODE: UTF-8, lone surrogates allowed. */
        o = PyUnicode_DecodeUTF8(data, (Py_ssize_t)len, "surrogatepass");
        break;
    case MPC_V_BYTES:
        /* A new object also for one byte, as pickle.loads' BINBYTES makes
         * it (PyBytes_FromStringAndSize() of data would give the shared
         * one-byte object). */
        o = PyBytes_FromStringAndSize(len ? NULL : "", (Py_ssize_t)len);
        if (o && len)
            memcpy(PyBytes_AS_STRING(o), data, len);
        break;
    default: o = PyByteArray_FromStringAndSize(data, (Py_ssize_t)len); break;
    }
    return o ? (void *)o : mpcpy_b_fail(err);
}

static void mpcpy_b_drop(void **items, size_t from, size_t n)
{
    size_t i;
    for (i = from; i < n; i++)
        Py_DECREF((PyObject *)items[i]);
}

/* Adds items[0..n) to the list, dict, set or frozenset c (takes them
 * all). */
static int mpcpy_b_insert(PyObject *c, mpc_vkind kind, void **items, size_t n)
{
    size_t i;
    if (kind == MPC_V_LIST && n > 1) {
        /* APPENDS: one resize, as pickle.loads extends by a slice (of a
         * tuple here: small ones cost no allocation). */
        PyObject *tail = PyTuple_New((Py_ssize_t)n);
        int rc;
        if (!tail) {
            mpcpy_b_drop(items, 0, n);
            return -1;
        }
        for (i = 0; i < n; i++)
            PyTuple_SET_ITEM(tail, (Py_ssize_t)i, (PyObject *)items[i]);
        rc = PyList_SetSlice(c, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, tail);
        Py_DECREF(tail);
        return rc;
    }
    if (kind == MPC_V_DICT) {
        for (i = 0; i < n; i += 2) {
            PyObject *k = items[i], *v = items[i + 1];
            int rc = PyDict_SetItem(c, k, v);
            Py_DECREF(k);
            Py_DECREF(v);
            if (rc < 0) {
                mpcpy_b_drop(items, i + 2, n);
                return -1;
            }
        }
        return 0;
    }
    for (i = 0; i < n; i++) {
        PyObject *it = items[i];
        int rc = kind == MPC_V_LIST ? PyList_Append(c, it) : PySet_Add(c, it);
        Py_DECREF(it);
        if (rc < 0) {
            mpcpy_b_drop(items, i + 1, n);
            return -1;
        }
    }
    return 0;
}

static void *mpcpy_b_make(void *ctx, mpc_vkind kind, void **items, size_t n, mpc_error *err)
{
    PyObject *o;
    size_t i;
    (void)ctx;
    if (n == 0) {
        /* EMPTY_LIST, EMPTY_DICT, EMPTY_TUPLE, EMPTY_SET: as pickle.loads
         * makes them (the empty tuple is the interpreter's one). */
        switch (kind) {
        case MPC_V_LIST: o = PyList_New(0); break;
        case MPC_V_DICT: o = PyDict_New(); break;
        case MPC_V_TUPLE: o = PyTuple_New(0); break;
        case MPC_V_SET: o = PySet_New(NULL); break;
        default: o = PyFrozenSet_New(NULL); break;
        }
        return o ? (void *)o : mpcpy_b_fail(err);
    }
    if (n > (size_t)PY_SSIZE_T_MAX / sizeof(PyObject *)) {
        mpcpy_b_drop(items, 0, n);
        PyErr_NoMemory();
        return mpcpy_b_fail(err);
    }
    switch (kind) {
    case MPC_V_LIST:
    case MPC_V_TUPLE:
        /* Made and filled with no allocation in between: complete as soon
         * as anything could see it. */
        o = kind == MPC_V_LIST ? PyList_New((Py_ssize_t)n) : PyTuple_New((Py_ssize_t)n);
        if (!o) {
            mpcpy_b_drop(items, 0, n);
            return mpcpy_b_fail(err);
        }
        for (i = 0; i < n; i++) {
            if (kind == MPC_V_LIST)
                PyList_SET_ITEM(o, (Py_ssize_t)i, (PyObject *)items[i]);
            else
                PyTuple_SET_ITEM(o, (Py_ssize_t)i, (PyObject *)items[i]);
        }
        return o;
    case MPC_V_DICT:
        /* (DICT: not presized, as pickle.loads makes it: a presized dict
         * holds str keys in a larger table) */
        o = PyDict_New();
        break;
    case MPC_V_SET: o = PySet_New(NULL); break;
    default: o = PyFrozenSet_New(NULL); break; /* (filled while nobody else holds it) */
    }
    if (!o) {
        mpcpy_b_drop(items, 0, n);
        return mpcpy_b_fail(err);
    }
    if (mpcpy_b_insert(o, kind, items, n) < 0) {
        Py_DECREF(o);
        return mpcpy_b_fail(err);
    }
    return o;
}

static mpc_status mpcpy_b_add(void *ctx, void *c, mpc_vkind kind, void **items, size_t n,
                              mpc_error *err)
{
    (void)ctx;
    if (mpcpy_b_insert((PyObject *)c, kind, items, n) < 0) {
        mpcpy_b_fail(err);
        return err->status;
    }
    return MPC_OK;
}

static void mpcpy_b_ref(void *ctx, void *h)
{
    (void)ctx;
    Py_INCREF((PyObject *)h);
}

static void mpcpy_b_release(void *ctx, void *h)
{
    (void)ctx;
    Py_DECREF((PyObject *)h);
}

static mpc_vkind mpcpy_b_kind(void *ctx, void *h)
{
    PyObject *o = h;
    (void)ctx;
    if (PyUnicode_CheckExact(o))
        return MPC_V_STR;
    if (PyBytes_CheckExact(o))
        return MPC_V_BYTES;
    if (PyByteArray_CheckExact(o))
        return MPC_V_BYTEARRAY;
    if (PyList_CheckExact(o))
        return MPC_V_LIST;
    if (PyTuple_CheckExact(o))
        return MPC_V_TUPLE;
    if (PyDict_CheckExact(o))
        return MPC_V_DICT;
    if (PyFrozenSet_CheckExact(o))
        return MPC_V_FROZENSET;
    if (PyAnySet_CheckExact(o))
        return MPC_V_SET;
    if (PyBool_Check(o))
        return MPC_V_BOOL;
    if (PyLong_CheckExact(o))
        return MPC_V_INT;
    if (PyFloat_CheckExact(o))
        return MPC_V_FLOAT;
    return MPC_V_NONE;
}

static const char *mpcpy_b_data(void *ctx, void *h, size_t *len)
{
    PyObject *o = h;
    Py_ssize_t n = 0;
    const char *s = NULL;
    (void)ctx;
    if (PyUnicode_CheckExact(o)) {
        s = PyUnicode_AsUTF8AndSize(o, &n);
        if (!s)
            PyErr_Clear(); /* (lone surrogates: no UTF-8; matches nothing) */
    } else if (PyBytes_CheckExact(o)) {
        s = PyBytes_AS_STRING(o);
        n = PyBytes_GET_SIZE(o);
    } else if (PyByteArray_CheckExact(o)) {
        s = PyByteArray_AS_STRING(o);
        n = PyByteArray_GET_SIZE(o);
    }
    *len = s ? (size_t)n : 0;
    return s;
}

static size_t mpcpy_b_len(void *ctx, void *h)
{
    PyObject *o = h;
    (void)ctx;
    if (PyList_CheckExact(o))
        return (size_t)PyList_GET_SIZE(o);
    if (PyTuple_CheckExact(o))
        return (size_t)PyTuple_GET_SIZE(o);
    return 0;
}

static void *mpcpy_b_item(void *ctx, void *h, size_t i)
{
    PyObject *o = h;
    (void)ctx;
    if (PyList_CheckExact(o) && i < (size_t)PyList_GET_SIZE(o))
        return PyList_GET_ITEM(o, (Py_ssize_t)i);
    if (PyTuple_CheckExact(o) && i < (size_t)PyTuple_GET_SIZE(o))
        return PyTuple_GET_ITEM(o, (Py_ssize_t)i);
    return NULL;
}

/* No can_add: a set may take ADDITEMS wherever it is, as in
 * pickle.loads(); no flags: the decoder bounds the nesting. */
static const mpc_value_builder mpcpy_builder = {
    mpcpy_b_scalar, mpcpy_b_bigint, mpcpy_b_buffer, mpcpy_b_make,  mpcpy_b_add,
    NULL,           mpcpy_b_ref,    mpcpy_b_release, mpcpy_b_kind, mpcpy_b_data,
    mpcpy_b_len,    mpcpy_b_item,   0,
};

PyObject *mpcpy_restricted_loads(const mpcpy_state *s, const void *data, size_t len)
{
    mpc_decode_options o;
    mpc_error e;
    mpc_status st;
    void *out = NULL;
    PyObject *cls, *m;
    memset(&o, 0, sizeof o); /* nesting 1000, Python 2 str as ASCII: pickle.loads' defaults */
    memset(&e, 0, sizeof e);
    st = mpc_value_decode_with(data, len, &o, &mpcpy_builder, NULL, &out, &e);
    if (st == MPC_OK)
        return (PyObject *)out;
    if (PyErr_Occurred())
        return NULL;
    if (st == MPC_NOMEM)
        return PyErr_NoMemory();
    cls = s && s->restricted_error ? s->restricted_error : PyExc_ValueError;
    m = PyUnicode_DecodeUTF8(e.message, (Py_ssize_t)strlen(e.message), "replace");
    if (m) {
        PyErr_SetObject(cls, m);
        Py_DECREF(m);
    }
    return NULL;
}
