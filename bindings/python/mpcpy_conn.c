/*
 * mpcpy_conn.c - ConnectionBase, the C part of mpconn.Connection: one
 * mpc_conn and the calls that are hot or need the busy/hold/wake logic.
 *
 * What a generic wrapper cannot give cheaply:
 *   - the GIL released around every blocking call;
 *   - buffers passed through without copies (send_bytes from the caller's
 *     buffer, recv_bytes straight into the bytes object it returns through
 *     mpc_recv_with(), recv_bytes_into straight into the caller's buffer);
 *   - METH_FASTCALL methods, so the per-call overhead stays small;
 *   - a "busy" count: a method holds the handle from the moment its
 *     arguments are converted (conversions run Python code) to its end, so a
 *     close() from a finalizer, a signal handler or another thread only
 *     marks the object, and the call that holds it finishes the close; the
 *     count is forgotten in a forked child (its calls are the parent's);
 *     close() never calls shutdown(2), which would reach every process
 *     sharing the socket;
 *   - the interrupt hook, so Ctrl-C interrupts a blocked recv/accept.
 * Cold calls on a connection (its peer, timeout, read-ahead switch) are
 * wrapped by SWIG, through mpcpy_conn_arg() (typemaps in mpconn_python.i).
 */
#include "mpcpy.h"

#include <math.h>
#include <string.h>

/* Collects the arguments of a METH_FASTCALL | METH_KEYWORDS call into
 * out[0..n) (NULL = not given).  0, or -1 with TypeError set.  (Static
 * here: the compiler specialises it for each method's constants.) */
static int mpcpy_args(const char *fname, const char *const *names, Py_ssize_t n, Py_ssize_t required,
               PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **out)
{
    Py_ssize_t i, k, nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (i = 0; i < n; i++)
        out[i] = NULL;
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", fname, n,
                     nargs);
        return -1;
    }
    for (i = 0; i < nargs; i++)
        out[i] = args[i];
    for (k = 0; k < nkw; k++) {
        const char *kw = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
        if (!kw)
            return -1;
        for (i = 0; i < n; i++)
            if (strcmp(kw, names[i]) == 0)
                break;
        if (i == n) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%s'", fname,
                         kw);
            return -1;
        }
        if (out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         kw);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (i = 0; i < required; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

/* Runs stmt with the GIL released (the caller holds the handle). */
#define MPCPY_UNLOCKED(stmt)                                                  \
    do {                                                                      \
        Py_BEGIN_ALLOW_THREADS                                                \
        stmt;                                                                 \
        Py_END_ALLOW_THREADS                                                  \
    } while (0)

/* Closes the descriptor (unless detach) and frees the connection. */
static void mpcpy_conn_free(mpcpy_conn *self, int detach)
{
    mpc_conn *c = self->c;
    if (!c)
        return;
    self->readable = (char)mpc_conn_readable(c);
    self->writable = (char)mpc_conn_writable(c);
    self->c = NULL;
    self->close_pending = 0;
    if (detach)
        (void)mpc_conn_detach(c);
    else
        mpc_conn_close(c);
}

/* Forgets calls counted before a fork (they are the parent's), finishing a
 * close() that was waiting for them. */
static void mpcpy_conn_sync(mpcpy_conn *self)
{
    if (self->gen != self->st->fork_gen) {
        self->gen = self->st->fork_gen;
        self->busy = 0;
        if (self->close_pending)
            mpcpy_conn_free(self, 0);
    }
}

static int mpcpy_conn_is_open(mpcpy_conn *self)
{
    mpcpy_conn_sync(self);
    return self->c && !self->close_pending && mpc_conn_fileno(self->c) >= 0;
}

/* The live handle, or NULL with OSError("handle is closed").  Runs no
 * Python code. */
static mpc_conn *mpcpy_conn_get(mpcpy_conn *self)
{
    if (!mpcpy_conn_is_open(self)) {
        mpcpy_raise(self->st, MPC_CLOSED, NULL, 0, NULL);
        return NULL;
    }
    return self->c;
}

/* Takes the handle for the rest of a method: a close() from Python code
 * that runs meanwhile (a finalizer, a signal handler, another thread) only
 * marks it, and mpcpy_conn_drop() finishes it.  Call it after every
 * argument conversion, since those can run Python code. */
static mpc_conn *mpcpy_conn_hold(mpcpy_conn *self)
{
    mpc_conn *c = mpcpy_conn_get(self);
    if (c)
        self->busy++;
    return c;
}

/* Lets go of the handle; returns r. */
static PyObject *mpcpy_conn_drop(mpcpy_conn *self, PyObject *r)
{
    if (self->gen == self->st->fork_gen && self->busy > 0)
        self->busy--;
    if (self->busy == 0 && self->close_pending)
        mpcpy_conn_free(self, 0);
    return r;
}

/* Raises the exception for a failed call on the held handle c. */
static PyObject *mpcpy_conn_fail(const mpcpy_conn *self, mpc_conn *c, mpc_status st)
{
    return mpcpy_raise(self->st, st, mpc_conn_errmsg(c), mpc_conn_errno(c), NULL);
}

/* 1 when this interpreter runs other threads than the caller's: only
 * then can a close() come while a receive waits with the GIL released. */
static int mpcpy_other_threads(void)
{
    PyThreadState *ts = PyThreadState_Get();
#if PY_VERSION_HEX >= 0x03090000
    PyInterpreterState *is = PyThreadState_GetInterpreter(ts);
#else
    PyInterpreterState *is = ts->interp;
#endif
    PyThreadState *head = PyInterpreterState_ThreadHead(is);
    return head && PyThreadState_Next(head) != NULL;
}

/* The live, held handle if it is readable (writable), else NULL with the
 * exception CPython raises.  A receive made while other threads run is
 * wakeable, so that close() from one of them wakes it (one poll(2) more
 * per read that waits; single-threaded programs pay nothing). */
static mpc_conn *mpcpy_conn_hold_dir(mpcpy_conn *self, int write)
{
    mpc_conn *c = mpcpy_conn_hold(self);
    if (c && !(write ? mpc_conn_writable(c) : mpc_conn_readable(c))) {
        mpcpy_raise(self->st, write ? MPC_NOTWRITABLE : MPC_NOTREADABLE, NULL, 0, NULL);
        mpcpy_conn_drop(self, NULL);
        return NULL;
    }
    if (c && !write)
        (void)mpc_conn_set_wakeable(c, mpcpy_other_threads());
    return c;
}

/* The checks CPython makes before it looks at the arguments: open, then
 * readable (writable).  0 or -1 with the exception set. */
static int mpcpy_conn_precheck(mpcpy_conn *self, int write)
{
    mpc_conn *c = mpcpy_conn_get(self);
    if (!c)
        return -1;
    if (!(write ? mpc_conn_writable(c) : mpc_conn_readable(c))) {
        mpcpy_raise(self->st, write ? MPC_NOTWRITABLE : MPC_NOTREADABLE, NULL, 0, NULL);
        return -1;
    }
    return 0;
}

PyObject *mpcpy_conn_new_from(mpcpy_state *s, PyTypeObject *cls, mpc_conn *c)
{
    mpcpy_conn *self;
    if (!PyType_IsSubtype(cls, s->conn_type)) {
        mpc_conn_close(c);
        PyErr_SetString(PyExc_TypeError, "not a ConnectionBase subclass");
        return NULL;
    }
    self = (mpcpy_conn *)cls->tp_alloc(cls, 0);
    if (!self) {
        mpc_conn_close(c);
        return NULL;
    }
    self->c = c;
    self->st = s;
    self->gen = s->fork_gen;
    self->readable = (char)mpc_conn_readable(c);
    self->writable = (char)mpc_conn_writable(c);
    mpc_conn_set_interrupt(c, mpcpy_interrupt, NULL);
    return (PyObject *)self;
}

static PyObject *mpcpy_conn_tp_new(PyTypeObject *cls, PyObject *args, PyObject *kwds)
{
    mpcpy_state *s = mpcpy_state_of_type(cls);
    mpcpy_conn *self;
    (void)args;
    (void)kwds;
    if (!s) {
        PyErr_SetString(PyExc_TypeError, "not a ConnectionBase subclass");
        return NULL;
    }
    self = (mpcpy_conn *)cls->tp_alloc(cls, 0);
    if (self) {
        self->st = s;
        self->gen = s->fork_gen;
    }
    return (PyObject *)self;
}

static int mpcpy_conn_init(mpcpy_conn *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"handle", "readable", "writable", NULL};
    PyObject *handle, *idx;
    int readable = 1, writable = 1;
    long fd;
    mpc_options o;
    mpc_error e;
    mpc_conn *c = NULL;
    mpc_status st;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|pp:Connection", kwlist, &handle, &readable,
                                     &writable))
        return -1;
    idx = PyNumber_Index(handle);
    if (!idx)
        return -1;
    fd = PyLong_AsLong(idx);
    Py_DECREF(idx);
    if (fd == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        fd = -1;
    }
    if (fd < 0 || fd > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "invalid handle");
        return -1;
    }
    if (!readable && !writable) {
        PyErr_SetString(PyExc_ValueError, "at least one of `readable` and `writable` must be True");
        return -1;
    }
    mpcpy_conn_sync(self);
    if (self->c) {
        PyErr_SetString(PyExc_RuntimeError, "Connection already initialised");
        return -1;
    }
    mpc_options_init(&o);
    o.interrupt = mpcpy_interrupt;
    memset(&e, 0, sizeof e);
    st = mpc_conn_from_fd((int)fd, readable, writable, &o, &c, &e);
    if (st != MPC_OK) {
        mpcpy_raise_err(self->st, &e);
        return -1;
    }
    self->c = c;
    self->gen = self->st->fork_gen;
    self->readable = (char)readable;
    self->writable = (char)writable;
    return 0;
}

static void mpcpy_conn_dealloc(mpcpy_conn *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    /* No call is in progress: each holds a reference. */
    mpcpy_conn_free(self, 0);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp); /* instances of heap types own a reference to it */
}

/* An offset or size as CPython compares them: any integer, huge ones
 * clipped (they then fail the range checks with CPython's ValueError).
 * -1 with an exception set on failure; *out set otherwise. */
static int mpcpy_ssize(PyObject *o, Py_ssize_t *out)
{
    Py_ssize_t v = PyNumber_AsSsize_t(o, NULL);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* A contiguous buffer of obj (flags as PyObject_GetBuffer); a
 * non-contiguous one is a TypeError, as in CPython's Connection. */
static int mpcpy_get_buffer(PyObject *obj, Py_buffer *view, int flags)
{
    if (PyObject_GetBuffer(obj, view, flags) == 0)
        return 0;
    if (PyErr_ExceptionMatches(PyExc_BufferError)) {
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        PyErr_Format(PyExc_TypeError, "a contiguous bytes-like object is required (%S)",
                     v ? v : Py_None);
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
    }
    return -1;
}

#if PY_VERSION_HEX < 0x03090000
/* CPython 3.8's send_bytes copies a buffer of items wider than a byte
 * (bytes(memoryview(buf))), so a strided one works there; 3.9 and later
 * cast it instead and refuse a strided one, as mpcpy_get_buffer() does.
 * A new bytes object, or NULL (no exception set) when 3.8 refuses too. */
static PyObject *mpcpy_py38_wide_copy(PyObject *obj)
{
    Py_buffer probe;
    int wide = 0;
    if (PyObject_GetBuffer(obj, &probe, PyBUF_FULL_RO) == 0) {
        wide = probe.itemsize > 1 && !PyBuffer_IsContiguous(&probe, 'C');
        PyBuffer_Release(&probe);
    }
    PyObject *b = wide ? PyBytes_FromObject(obj) : NULL;
    PyErr_Clear();
    return b;
}
#endif

/* send_bytes(buf, offset=0, size=None); try_ (_try_send_bytes, for
 * mpconn.asyncio): in non-blocking mode, the _AGAIN sentinel instead of
 * BlockingIOError, and on success mpc_conn_wants() instead of None (non-zero:
 * part of the message waits inside the connection for mpc_flush()). */
static PyObject *mpcpy_conn_send_bytes_impl(mpcpy_conn *self, PyObject *const *args,
                                            Py_ssize_t nargs, PyObject *kwnames, int try_)
{
    static const char *const names[] = {"buf", "offset", "size"};
    PyObject *a[3], *r;
    Py_buffer view;
    Py_ssize_t off = 0, size = -1;
    mpc_conn *c;
    mpc_status st;
    if (mpcpy_args("send_bytes", names, 3, 1, args, nargs, kwnames, a) < 0)
        return NULL;
    if (mpcpy_conn_precheck(self, 1) < 0)
        return NULL;
    /* Everything that can run Python code first, then the handle. */
    if (a[1] && mpcpy_ssize(a[1], &off) < 0)
        return NULL;
    if (a[2] && a[2] != Py_None && mpcpy_ssize(a[2], &size) < 0)
        return NULL;
#if PY_VERSION_HEX < 0x03090000
    if (PyObject_GetBuffer(a[0], &view, PyBUF_SIMPLE) < 0) {
        PyObject *copy = PyErr_ExceptionMatches(PyExc_BufferError) ? mpcpy_py38_wide_copy(a[0]) : NULL;
        int got = copy ? PyObject_GetBuffer(copy, &view, PyBUF_SIMPLE) : -1;
        Py_XDECREF(copy); /* the view keeps its own reference */
        if (got < 0 && mpcpy_get_buffer(a[0], &view, PyBUF_SIMPLE) < 0)
            return NULL;
    }
#else
    if (mpcpy_get_buffer(a[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
#endif
    if (off < 0) {
        PyErr_SetString(PyExc_ValueError, "offset is negative");
        goto fail;
    }
    if (view.len < off) {
        PyErr_SetString(PyExc_ValueError, "buffer length < offset");
        goto fail;
    }
    if (!a[2] || a[2] == Py_None) {
        size = view.len - off;
    } else if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "size is negative");
        goto fail;
    } else if (size > view.len - off) {
        PyErr_SetString(PyExc_ValueError, "buffer length < offset + size");
        goto fail;
    }
    if (!(c = mpcpy_conn_hold_dir(self, 1)))
        goto fail;
    MPCPY_UNLOCKED(st = mpc_send_bytes(c, (const char *)view.buf + off, (size_t)size));
    if (st == MPC_OK)
        r = try_ ? PyLong_FromLong(mpc_conn_wants(c)) : (Py_INCREF(Py_None), Py_None);
    else if (st == MPC_AGAIN && try_)
        r = (Py_INCREF(self->st->again), self->st->again);
    else
        r = mpcpy_conn_fail(self, c, st);
    PyBuffer_Release(&view);
    return mpcpy_conn_drop(self, r);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

static PyObject *mpcpy_conn_send_bytes(mpcpy_conn *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
    return mpcpy_conn_send_bytes_impl(self, args, nargs, kwnames, 0);
}

static PyObject *mpcpy_conn_try_send_bytes(mpcpy_conn *self, PyObject *const *args,
                                           Py_ssize_t nargs, PyObject *kwnames)
{
    return mpcpy_conn_send_bytes_impl(self, args, nargs, kwnames, 1);
}

/* send_bytes_many(buffers): every buffer one message, one system call. */
static PyObject *mpcpy_conn_send_bytes_many(mpcpy_conn *self, PyObject *seq)
{
    PyObject *fast;
    Py_ssize_t n, i, got = 0;
    Py_buffer *views = NULL;
    mpc_buf *bufs = NULL;
    mpc_conn *c;
    mpc_status st = MPC_OK;
    PyObject *ret = NULL;
    if (mpcpy_conn_precheck(self, 1) < 0)
        return NULL;
    fast = PySequence_Fast(seq, "send_bytes_many() expects a sequence of bytes-like objects");
    if (!fast)
        return NULL;
    n = PySequence_Fast_GET_SIZE(fast);
    if (n == 0) {
        Py_DECREF(fast);
        Py_RETURN_NONE;
    }
    views = PyMem_Malloc((size_t)n * sizeof *views);
    bufs = PyMem_Malloc((size_t)n * sizeof *bufs);
    if (!views || !bufs) {
        PyErr_NoMemory();
        goto done;
    }
    for (got = 0; got < n; got++) {
        if (mpcpy_get_buffer(PySequence_Fast_GET_ITEM(fast, got), &views[got], PyBUF_SIMPLE) < 0)
            goto done;
        bufs[got].data = views[got].buf;
        bufs[got].len = (size_t)views[got].len;
    }
    if (!(c = mpcpy_conn_hold_dir(self, 1)))
        goto done;
    MPCPY_UNLOCKED(st = mpc_send_many(c, bufs, (size_t)n));
    ret = st == MPC_OK ? (Py_INCREF(Py_None), Py_None) : mpcpy_conn_fail(self, c, st);
    mpcpy_conn_drop(self, NULL);
done:
    for (i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(bufs);
    Py_DECREF(fast);
    return ret;
}

/* The allocator mpcpy_conn_recv_message() hands to mpc_recv_with(): the
 * message becomes a bytes object, grown in place.  The core calls it with
 * the GIL in the state rx->ts says (NULL: held); it takes the GIL, and
 * lets go of it again when the bytes it returns are not all in the read
 * buffer yet (a read that may block follows), so a message costs no more
 * GIL round trips than the reads it needs. */
typedef struct {
    PyObject *bytes;
    PyThreadState *ts; /* the saved thread state while the GIL is released */
    mpc_conn *c;
} mpcpy_rx;

static void *mpcpy_rx_alloc(void *arg, void *old, size_t old_size, size_t new_size)
{
    mpcpy_rx *rx = arg;
    if (rx->ts) {
        PyEval_RestoreThread(rx->ts);
        rx->ts = NULL;
    }
    if (old && new_size == 0) {
        Py_CLEAR(rx->bytes);
        return NULL;
    }
    if (!old)
        rx->bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)new_size);
    else if (_PyBytes_Resize(&rx->bytes, (Py_ssize_t)new_size) < 0)
        return NULL; /* (rx->bytes is NULL now: nothing left to free) */
    if (!rx->bytes)
        return NULL;
    if (mpc_conn_buffered(rx->c) < new_size - old_size && mpc_conn_blocking(rx->c))
        rx->ts = PyEval_SaveThread();
    return PyBytes_AS_STRING(rx->bytes);
}

/* One whole message as bytes (the handle held, readable).  The GIL is let
 * go of while the header may have to be waited for; a message already
 * whole in the read-ahead buffer, or one whose header is, is taken with
 * the GIL held (mpcpy_rx_alloc() lets go of it for the payload if that
 * must be waited for).  try_: the _AGAIN sentinel rather than
 * BlockingIOError when a non-blocking receive would wait. */
static PyObject *mpcpy_conn_recv_message(mpcpy_conn *self, mpc_conn *c, size_t maxlength,
                                         int try_)
{
    mpcpy_rx rx = {NULL, NULL, c};
    void *out;
    size_t len;
    const void *view;
    mpc_status st;
    size_t buffered = mpc_conn_buffered(c);
    if (buffered >= MPC_FRAME_HEADER_MAX || !mpc_conn_blocking(c) ||
        (buffered >= 4 && mpc_recv_peek(c, maxlength, &view, &len) == MPC_OK)) {
        st = mpc_recv_with(c, maxlength, mpcpy_rx_alloc, &rx, &out, &len);
    } else {
        rx.ts = PyEval_SaveThread();
        st = mpc_recv_with(c, maxlength, mpcpy_rx_alloc, &rx, &out, &len);
    }
    if (rx.ts)
        PyEval_RestoreThread(rx.ts);
    if (st == MPC_AGAIN && try_)
        return Py_INCREF(self->st->again), self->st->again;
    if (st != MPC_OK)
        return mpcpy_conn_fail(self, c, st); /* (an allocator's MemoryError stays) */
    return rx.bytes;
}

/* maxlength as CPython uses it (size > maxlength is too long): None, any
 * integer, or a float.  0 or -1 with an exception set. */
static int mpcpy_maxlength(PyObject *o, size_t *out)
{
    *out = MPC_NO_LIMIT;
    if (!o || o == Py_None)
        return 0;
    if (PyFloat_Check(o)) {
        double d = PyFloat_AS_DOUBLE(o);
        if (d < 0) {
            PyErr_SetString(PyExc_ValueError, "negative maxlength");
            return -1;
        }
        if (d == d && d < 1.8e19)
            *out = (size_t)floor(d);
        return 0;
    }
    Py_ssize_t m = PyNumber_AsSsize_t(o, NULL);
    if (m == -1 && PyErr_Occurred())
        return -1;
    if (m < 0) {
        PyErr_SetString(PyExc_ValueError, "negative maxlength");
        return -1;
    }
    *out = m == PY_SSIZE_T_MAX ? MPC_NO_LIMIT : (size_t)m;
    return 0;
}

/* recv_bytes(maxlength=None); try_: _try_recv_bytes (see recv_message) */
static PyObject *mpcpy_conn_recv_bytes_impl(mpcpy_conn *self, PyObject *const *args,
                                            Py_ssize_t nargs, PyObject *kwnames, int try_)
{
    static const char *const names[] = {"maxlength"};
    PyObject *a[1];
    size_t maxlength;
    mpc_conn *c;
    if (mpcpy_args("recv_bytes", names, 1, 0, args, nargs, kwnames, a) < 0)
        return NULL;
    if (mpcpy_conn_precheck(self, 0) < 0)
        return NULL;
    if (mpcpy_maxlength(a[0], &maxlength) < 0)
        return NULL;
    if (!(c = mpcpy_conn_hold_dir(self, 0)))
        return NULL;
    return mpcpy_conn_drop(self, mpcpy_conn_recv_message(self, c, maxlength, try_));
}

static PyObject *mpcpy_conn_recv_bytes(mpcpy_conn *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
    return mpcpy_conn_recv_bytes_impl(self, args, nargs, kwnames, 0);
}

static PyObject *mpcpy_conn_try_recv_bytes(mpcpy_conn *self, PyObject *const *args,
                                           Py_ssize_t nargs, PyObject *kwnames)
{
    return mpcpy_conn_recv_bytes_impl(self, args, nargs, kwnames, 1);
}

/* recv_bytes_into(buf, offset=0) */
static PyObject *mpcpy_conn_recv_bytes_into(mpcpy_conn *self, PyObject *const *args,
                                            Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"buf", "offset"};
    PyObject *a[2], *r;
    Py_buffer view;
    Py_ssize_t off = 0;
    size_t len = 0;
    mpc_conn *c;
    mpc_status st;
    if (mpcpy_args("recv_bytes_into", names, 2, 1, args, nargs, kwnames, a) < 0)
        return NULL;
    if (mpcpy_conn_precheck(self, 0) < 0)
        return NULL;
    if (a[1] && mpcpy_ssize(a[1], &off) < 0)
        return NULL;
    if (mpcpy_get_buffer(a[0], &view, PyBUF_WRITABLE) < 0)
        return NULL;
    if (off < 0) {
        PyErr_SetString(PyExc_ValueError, "negative offset");
        PyBuffer_Release(&view);
        return NULL;
    }
    if (off > view.len) {
        PyErr_SetString(PyExc_ValueError, "offset too large");
        PyBuffer_Release(&view);
        return NULL;
    }
    if (!(c = mpcpy_conn_hold_dir(self, 0))) {
        PyBuffer_Release(&view);
        return NULL;
    }
    MPCPY_UNLOCKED(st = mpc_recv_bytes_into(c, (char *)view.buf + off,
                                            (size_t)(view.len - off), &len));
    PyBuffer_Release(&view);
    if (st == MPC_TOOSHORT) {
        /* The message is still pending: take it and hand it over in the
         * exception, as CPython does (the stream stays in step). */
        PyObject *msg = mpcpy_conn_recv_message(self, c, MPC_NO_LIMIT, 0);
        if (msg) {
            mpcpy_raise(self->st, MPC_TOOSHORT, NULL, 0, msg);
            Py_DECREF(msg);
        }
        r = NULL;
    } else {
        r = st == MPC_OK ? PyLong_FromSize_t(len) : mpcpy_conn_fail(self, c, st);
    }
    return mpcpy_conn_drop(self, r);
}

/* poll(timeout=0.0) */
static PyObject *mpcpy_conn_poll(mpcpy_conn *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    static const char *const names[] = {"timeout"};
    PyObject *a[1];
    mpc_conn *c;
    mpc_ms ms = 0;
    int ready = 0;
    mpc_status st;
    if (mpcpy_args("poll", names, 1, 0, args, nargs, kwnames, a) < 0)
        return NULL;
    if (mpcpy_conn_precheck(self, 0) < 0)
        return NULL;
    if (a[0]) {
        ms = mpcpy_timeout_ms(a[0], MPC_FOREVER);
        if (ms == -2)
            return NULL;
    }
    if (!(c = mpcpy_conn_hold_dir(self, 0)))
        return NULL;
    st = mpc_poll(c, 0, &ready);
    if (st == MPC_OK && !ready && ms != 0)
        MPCPY_UNLOCKED(st = mpc_poll(c, ms, &ready));
    /* Woken by a close() from another thread: ready, as a select() on a
     * closed descriptor says (the next call tells what happened). */
    if (st == MPC_CLOSED && self->close_pending)
        st = MPC_OK, ready = 1;
    return mpcpy_conn_drop(self, st == MPC_OK ? PyBool_FromLong(ready) : mpcpy_conn_fail(self, c, st));
}

/* send(obj): ForkingPickler.dumps(obj), then one message. */
static PyObject *mpcpy_conn_send(mpcpy_conn *self, PyObject *obj)
{
    PyObject *data, *r;
    mpc_conn *c;
    Py_buffer view;
    if (mpcpy_conn_precheck(self, 1) < 0)
        return NULL;
    if (!self->st->dumps) {
        PyErr_SetString(PyExc_RuntimeError, "mpconn not set up");
        return NULL;
    }
    data = PyObject_CallFunctionObjArgs(self->st->dumps, obj, NULL);
    if (!data)
        return NULL;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(data);
        return NULL;
    }
    /* The pickling may have run code that closed us: hold after it. */
    if (!(c = mpcpy_conn_hold_dir(self, 1))) {
        r = NULL;
    } else {
        mpc_status st;
        MPCPY_UNLOCKED(st = mpc_send_bytes(c, view.buf, (size_t)view.len));
        r = st == MPC_OK ? (Py_INCREF(Py_None), Py_None) : mpcpy_conn_fail(self, c, st);
        mpcpy_conn_drop(self, NULL);
    }
    PyBuffer_Release(&view);
    Py_DECREF(data);
    return r;
}

/* recv(*, restricted=None): one message, unpickled: with pickle's loads,
 * or, when restricted (the argument, else the connection's setting), with
 * the allow-list decoder (mpcpy_values.c).  The message is received whole
 * before it is decoded, so a refused one leaves the stream in step.
 * try_: _try_recv (see recv_message). */
static PyObject *mpcpy_conn_recv_impl(mpcpy_conn *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames, int try_)
{
    static const char *const names[] = {"restricted"};
    PyObject *data, *r, *a[1];
    mpc_conn *c;
    int restricted = self->restricted;
    if (nargs) {
        PyErr_Format(PyExc_TypeError, "recv() takes no positional arguments (%zd given)", nargs);
        return NULL;
    }
    if (kwnames) {
        if (mpcpy_args("recv", names, 1, 0, args, 0, kwnames, a) < 0)
            return NULL;
        if (a[0] && a[0] != Py_None && (restricted = PyObject_IsTrue(a[0])) < 0)
            return NULL;
    }
    if (!self->st->loads) {
        PyErr_SetString(PyExc_RuntimeError, "mpconn not set up");
        return NULL;
    }
    if (!(c = mpcpy_conn_hold_dir(self, 0)))
        return NULL;
    data = mpcpy_conn_drop(self, mpcpy_conn_recv_message(self, c, MPC_NO_LIMIT, try_));
    if (!data || data == self->st->again)
        return data;
    if (restricted)
        r = mpcpy_restricted_loads(self->st, PyBytes_AS_STRING(data),
                                   (size_t)PyBytes_GET_SIZE(data));
    else
        r = PyObject_CallFunctionObjArgs(self->st->loads, data, NULL);
    Py_DECREF(data);
    return r;
}

static PyObject *mpcpy_conn_recv(mpcpy_conn *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    return mpcpy_conn_recv_impl(self, args, nargs, kwnames, 0);
}

static PyObject *mpcpy_conn_try_recv(mpcpy_conn *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    return mpcpy_conn_recv_impl(self, args, nargs, kwnames, 1);
}

static PyObject *mpcpy_conn_fileno(mpcpy_conn *self, PyObject *unused)
{
    mpc_conn *c = mpcpy_conn_get(self);
    (void)unused;
    return c ? PyLong_FromLong(mpc_conn_fileno(c)) : NULL;
}

/* close(): closes the descriptor, never shuts the socket down (another
 * process may share it).  While a call of this process is inside a method
 * (another thread blocked in recv, or the caller of a finalizer), the close
 * is finished by that call when it returns, so the descriptor cannot be
 * reused under it; a receive or poll waiting in another thread is woken
 * (mpc_conn_wake: an eventfd, invisible to other processes) and raises
 * OSError("handle is closed").  A blocked send is not woken. */
static PyObject *mpcpy_conn_close(mpcpy_conn *self, PyObject *unused)
{
    (void)unused;
    mpcpy_conn_sync(self);
    if (!self->c || self->close_pending)
        Py_RETURN_NONE;
    if (self->busy) {
        self->close_pending = 1;
        mpc_conn_wake(self->c);
        Py_RETURN_NONE;
    }
    mpcpy_conn_free(self, 0);
    Py_RETURN_NONE;
}

/* _detach(): forgets the descriptor without closing it (conn._handle =
 * None, as code written for CPython does to keep __del__ off it). */
static PyObject *mpcpy_conn_detach(mpcpy_conn *self, PyObject *unused)
{
    (void)unused;
    mpcpy_conn_sync(self);
    if (!self->c)
        Py_RETURN_NONE;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "cannot detach a connection in use");
        return NULL;
    }
    mpcpy_conn_free(self, 1);
    Py_RETURN_NONE;
}

/* Bytes this process holds that the kernel no longer does (wait() and
 * pickling ask). */
static PyObject *mpcpy_conn_buffered(mpcpy_conn *self, PyObject *unused)
{
    (void)unused;
    if (!mpcpy_conn_is_open(self))
        return PyLong_FromLong(0);
    return PyLong_FromSize_t(mpc_conn_buffered(self->c));
}

static PyObject *mpcpy_conn_get_read_ahead(mpcpy_conn *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong(mpcpy_conn_is_open(self) && mpc_conn_read_ahead(self->c));
}

/* _handshake(leg, key, dialect, digest, timeout): leg 0 = deliver, 1 = answer. */
static PyObject *mpcpy_conn_handshake(mpcpy_conn *self, PyObject *args)
{
    int leg, dialect;
    PyObject *key, *digest, *timeout;
    mpc_options o;
    mpc_conn *c;
    mpc_ms ms;
    mpc_status st;
    if (!PyArg_ParseTuple(args, "iSiOO:_handshake", &leg, &key, &dialect, &digest, &timeout))
        return NULL;
    ms = mpcpy_timeout_ms(timeout, MPC_FOREVER);
    if (ms == -2)
        return NULL;
    if (ms == 0)
        ms = 1;
    if (mpcpy_options(&o, key, dialect, digest, ms, 0, 0) < 0)
        return NULL;
    if (!(c = mpcpy_conn_hold(self)))
        return NULL;
    if (leg == 0)
        MPCPY_UNLOCKED(st = mpc_conn_deliver_challenge(c, o.authkey, o.authkey_len, &o));
    else
        MPCPY_UNLOCKED(st = mpc_conn_answer_challenge(c, o.authkey, o.authkey_len, &o));
    return mpcpy_conn_drop(self, st == MPC_OK ? (Py_INCREF(Py_None), Py_None)
                                              : mpcpy_conn_fail(self, c, st));
}

static PyObject *mpcpy_conn_get_closed(mpcpy_conn *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong(!mpcpy_conn_is_open(self));
}

static PyObject *mpcpy_conn_get_readable_flag(mpcpy_conn *self, void *unused)
{
    (void)unused;
    if (mpcpy_conn_is_open(self))
        self->readable = (char)mpc_conn_readable(self->c);
    return PyBool_FromLong(self->readable);
}

static PyObject *mpcpy_conn_get_writable_flag(mpcpy_conn *self, void *unused)
{
    (void)unused;
    if (mpcpy_conn_is_open(self))
        self->writable = (char)mpc_conn_writable(self->c);
    return PyBool_FromLong(self->writable);
}

/* _handle: the descriptor (None once closed), as CPython's attribute;
 * assigning None forgets the descriptor without closing it. */
static PyObject *mpcpy_conn_get_handle(mpcpy_conn *self, void *unused)
{
    (void)unused;
    if (!mpcpy_conn_is_open(self))
        Py_RETURN_NONE;
    return PyLong_FromLong(mpc_conn_fileno(self->c));
}

static int mpcpy_conn_set_handle(mpcpy_conn *self, PyObject *value, void *unused)
{
    (void)unused;
    if (value != NULL && value != Py_None) {
        PyErr_SetString(PyExc_AttributeError, "_handle can only be set to None");
        return -1;
    }
    PyObject *r = mpcpy_conn_detach(self, NULL);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* ------------------------------------------------------ non-blocking mode
 * The plumbing of mpconn.asyncio (see mpconn.h, "Non-blocking mode"): in
 * that mode every call above that would wait raises BlockingIOError having
 * taken or sent nothing, and these say what to wait for. */

/* _setblocking(flag) */
static PyObject *mpcpy_conn_setblocking(mpcpy_conn *self, PyObject *flag)
{
    int on = PyObject_IsTrue(flag);
    mpc_conn *c;
    mpc_status st;
    if (on < 0 || !(c = mpcpy_conn_hold(self)))
        return NULL;
    st = mpc_conn_set_blocking(c, on);
    return mpcpy_conn_drop(self, st == MPC_OK ? (Py_INCREF(Py_None), Py_None)
                                              : mpcpy_conn_fail(self, c, st));
}

/* _wants() -> 0, 1 (readable), 2 (writable) or 3 (both) */
static PyObject *mpcpy_conn_wants(mpcpy_conn *self, PyObject *unused)
{
    mpc_conn *c = mpcpy_conn_get(self);
    (void)unused;
    return c ? PyLong_FromLong(mpc_conn_wants(c)) : NULL;
}

/* _pending() -> True while a whole message is already buffered */
static PyObject *mpcpy_conn_pending(mpcpy_conn *self, PyObject *unused)
{
    mpc_conn *c = mpcpy_conn_get(self);
    (void)unused;
    return c ? PyBool_FromLong(mpc_conn_pending(c)) : NULL;
}

/* _flush() -> True when connect, handshake and queued output are done,
 * False when they must wait (_wants() says on what) */
static PyObject *mpcpy_conn_flush(mpcpy_conn *self, PyObject *unused)
{
    mpc_conn *c;
    mpc_status st;
    (void)unused;
    if (!(c = mpcpy_conn_hold(self)))
        return NULL;
    st = mpc_flush(c);
    if (st == MPC_AGAIN)
        return mpcpy_conn_drop(self, (Py_INCREF(Py_False), Py_False));
    return mpcpy_conn_drop(self, st == MPC_OK ? (Py_INCREF(Py_True), Py_True)
                                              : mpcpy_conn_fail(self, c, st));
}

static PyObject *mpcpy_conn_get_restricted(mpcpy_conn *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->restricted);
}

static int mpcpy_conn_set_restricted(mpcpy_conn *self, PyObject *value, void *closure)
{
    int flag;
    (void)closure;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete restricted");
        return -1;
    }
    if ((flag = PyObject_IsTrue(value)) < 0)
        return -1;
    self->restricted = (char)flag;
    return 0;
}

static PyMethodDef mpcpy_conn_methods[] = {
    {"send_bytes", (PyCFunction)(void (*)(void))mpcpy_conn_send_bytes,
     METH_FASTCALL | METH_KEYWORDS, "Send the bytes data from a bytes-like object."},
    {"send_bytes_many", (PyCFunction)mpcpy_conn_send_bytes_many, METH_O,
     "Send each bytes-like object of a sequence as one message, in one system call."},
    {"recv_bytes", (PyCFunction)(void (*)(void))mpcpy_conn_recv_bytes,
     METH_FASTCALL | METH_KEYWORDS, "Receive bytes data as a bytes object."},
    {"recv_bytes_into", (PyCFunction)(void (*)(void))mpcpy_conn_recv_bytes_into,
     METH_FASTCALL | METH_KEYWORDS,
     "Receive bytes data into a writeable bytes-like object.\nReturn the number of bytes read."},
    {"poll", (PyCFunction)(void (*)(void))mpcpy_conn_poll, METH_FASTCALL | METH_KEYWORDS,
     "Whether there is any input available to be read"},
    {"send", (PyCFunction)mpcpy_conn_send, METH_O, "Send a (picklable) object"},
    {"recv", (PyCFunction)(void (*)(void))mpcpy_conn_recv, METH_FASTCALL | METH_KEYWORDS,
     "Receive a (picklable) object.  restricted=True (keyword-only; default: the\n"
     "connection's restricted attribute) decodes it with the allow-list decoder:\n"
     "builtin values only, anything else raises mpconn.RestrictedPickleError."},
    {"fileno", (PyCFunction)mpcpy_conn_fileno, METH_NOARGS, "File descriptor or handle of the connection"},
    {"close", (PyCFunction)mpcpy_conn_close, METH_NOARGS, "Close the connection"},
    {"_detach", (PyCFunction)mpcpy_conn_detach, METH_NOARGS, NULL},
    {"_buffered", (PyCFunction)mpcpy_conn_buffered, METH_NOARGS, NULL},
    {"_setblocking", (PyCFunction)mpcpy_conn_setblocking, METH_O, NULL},
    {"_wants", (PyCFunction)mpcpy_conn_wants, METH_NOARGS, NULL},
    {"_try_send_bytes", (PyCFunction)(void (*)(void))mpcpy_conn_try_send_bytes,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_try_recv_bytes", (PyCFunction)(void (*)(void))mpcpy_conn_try_recv_bytes,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_try_recv", (PyCFunction)(void (*)(void))mpcpy_conn_try_recv, METH_FASTCALL | METH_KEYWORDS,
     NULL},
    {"_pending", (PyCFunction)mpcpy_conn_pending, METH_NOARGS, NULL},
    {"_flush", (PyCFunction)mpcpy_conn_flush, METH_NOARGS, NULL},
    {"_handshake", (PyCFunction)mpcpy_conn_handshake, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef mpcpy_conn_getset[] = {
    {"closed", (getter)mpcpy_conn_get_closed, NULL, "True if the connection is closed", NULL},
    {"readable", (getter)mpcpy_conn_get_readable_flag, NULL, "True if the connection is readable", NULL},
    {"writable", (getter)mpcpy_conn_get_writable_flag, NULL, "True if the connection is writable", NULL},
    {"read_ahead", (getter)mpcpy_conn_get_read_ahead, NULL,
     "True if the connection reads ahead (see mpconn.Pipe(read_ahead=))", NULL},
    {"restricted", (getter)mpcpy_conn_get_restricted, (setter)mpcpy_conn_set_restricted,
     "True if recv() decodes with the allow-list decoder (mpconn.Listener(restricted=))", NULL},
    {"_handle", (getter)mpcpy_conn_get_handle, (setter)mpcpy_conn_set_handle, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

/* ------------------------------------------------- for SWIG's typemaps */

mpc_conn *mpcpy_conn_arg(PyObject *o)
{
    mpcpy_state *s = mpcpy_state_of_type(Py_TYPE(o));
    if (!s || !PyObject_TypeCheck(o, s->conn_type)) {
        PyErr_Format(PyExc_TypeError, "expected a Connection, not %.100s", Py_TYPE(o)->tp_name);
        return NULL;
    }
    return mpcpy_conn_get((mpcpy_conn *)o);
}

mpc_conn *mpcpy_conn_arg_hold(PyObject *o)
{
    return mpcpy_conn_arg(o) ? mpcpy_conn_hold((mpcpy_conn *)o) : NULL;
}

void mpcpy_conn_release(PyObject *o)
{
    (void)mpcpy_conn_drop((mpcpy_conn *)o, NULL);
}

PyObject *mpcpy_conn_arg_fail(PyObject *o, mpc_status st)
{
    mpcpy_conn *self = (mpcpy_conn *)o;
    return mpcpy_conn_fail(self, self->c, st);
}

static PyType_Slot mpcpy_conn_slots[] = {
    {Py_tp_doc, (void *)"The C part of mpconn.Connection (one mpc_conn)."},
    {Py_tp_new, (void *)mpcpy_conn_tp_new},
    {Py_tp_init, (void *)mpcpy_conn_init},
    {Py_tp_dealloc, (void *)mpcpy_conn_dealloc},
    {Py_tp_methods, mpcpy_conn_methods},
    {Py_tp_getset, mpcpy_conn_getset},
    {0, NULL}};

#ifndef Py_TPFLAGS_IMMUTABLETYPE
#define Py_TPFLAGS_IMMUTABLETYPE 0
#endif

PyType_Spec mpcpy_conn_spec = {
    "mpconn._mpconn.ConnectionBase",
    sizeof(mpcpy_conn),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    mpcpy_conn_slots,
};
