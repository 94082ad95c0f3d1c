/*
 * mpconn_python.i - the Python binding: typemaps, plus two small hand-written
 * extension types for the hot path.
 *
 * SWIG generates mpconn/core.py and the extension mpconn/_mpconn*.so (the
 * module is "core", not "_core": SWIG names the low-level module after it
 * with one more leading underscore, and "__core" would be name-mangled
 * inside proxy classes).  What
 * SWIG wraps from the header: the status table, the version, the constants,
 * the sans-I/O framing header and the sans-I/O handshake (used by
 * mpconn.deliver_challenge()/answer_challenge() on foreign connection
 * objects), each through the buffer typemaps below.
 *
 * The transport objects are not wrapped by SWIG's generic pointer proxies.
 * Instead ConnectionBase and ListenerHandle (below) own an mpc_conn /
 * mpc_listener and implement the calls that block, because those need what a
 * generic wrapper cannot give cheaply:
 *   - the GIL released around every blocking call;
 *   - buffers passed through without copies (send_bytes from the caller's
 *     buffer, recv_bytes straight into the bytes object it returns,
 *     recv_bytes_into straight into the caller's buffer);
 *   - METH_FASTCALL methods, so the per-call overhead stays small;
 *   - a "busy" count: a method holds the handle from the moment its
 *     arguments are converted (conversions run Python code) to its end, so a
 *     close() from a finalizer, a signal handler or another thread only
 *     marks the object, and the call that holds it finishes the close; the
 *     count is forgotten in a forked child (its calls are the parent's);
 *     close() never calls shutdown(2), which would reach every process
 *     sharing the socket;
 *   - the interrupt hook, so Ctrl-C interrupts a blocked recv/accept.
 * No protocol logic lives here: statuses are turned into exceptions by ONE
 * table in python/mpconn/_errors.py (registered with _setup()).
 */
%module(package="mpconn", moduleimport="from . import _mpconn as $module") core

%begin %{
#define PY_SSIZE_T_CLEAN
%}

%{
/* The extension is named _mpconn (the generated Python module is _core). */
#undef SWIG_init
#undef SWIG_name
#define SWIG_init PyInit__mpconn
#define SWIG_name "_mpconn"
#include <string.h>
#include <errno.h>
#include <math.h>
#include <unistd.h>
#include <sys/socket.h>
%}

/* ------------------------------------------------------------------------
 * Typemaps for the SWIG-wrapped (sans-I/O) part.
 * ------------------------------------------------------------------------ */

%fragment("mpcpy_append", "header") %{
/* Appends obj (a new reference, stolen) to a wrapper's result: version
 * independent replacement for SWIG_Python_AppendOutput. */
static PyObject *mpcpy_append(PyObject *result, PyObject *obj)
{
    if (!obj)
        return result;
    if (!result || result == Py_None) {
        Py_XDECREF(result);
        return obj;
    }
    if (!PyList_Check(result)) {
        PyObject *l = PyList_New(1);
        if (!l) {
            Py_DECREF(obj);
            return result;
        }
        PyList_SET_ITEM(l, 0, result);
        result = l;
    }
    PyList_Append(result, obj);
    Py_DECREF(obj);
    return result;
}
%}

/* Any (const void *, size_t) pair: a bytes-like object, borrowed for the
 * duration of the call (buffer protocol, no copy). */
%typemap(in) (const void *DATA, size_t LEN) (Py_buffer view) {
    view.obj = NULL;
    if (PyObject_GetBuffer($input, &view, PyBUF_SIMPLE) < 0)
        SWIG_fail;
    $1 = view.buf;
    $2 = (size_t)view.len;
}
%typemap(freearg) (const void *DATA, size_t LEN) {
    if (view$argnum.obj)
        PyBuffer_Release(&view$argnum);
}
%typemap(typecheck) (const void *DATA, size_t LEN) {
    $1 = PyObject_CheckBuffer($input);
}
%apply (const void *DATA, size_t LEN) {
    (const void *key, size_t key_len),
    (const void *random, size_t rand_len),
    (const void *challenge, size_t challenge_len),
    (const void *reply, size_t reply_len),
    (const void *msg, size_t len)
};

/* Handshake payloads produced by the library: returned as bytes (None when
 * the status is not MPC_OK). */
%typemap(in, numinputs=0, fragment="mpcpy_append")
    (unsigned char *out, size_t cap, size_t *out_len)
    (unsigned char obuf[2 * MPC_HS_FRAME_MAX], size_t olen) {
    olen = 0;
    $1 = obuf;
    $2 = sizeof obuf;
    $3 = &olen;
}
%typemap(argout) (unsigned char *out, size_t cap, size_t *out_len) {
    if (result == MPC_OK) {
        $result = mpcpy_append($result, PyBytes_FromStringAndSize((const char *)obuf$argnum, (Py_ssize_t)olen$argnum));
    } else {
        Py_INCREF(Py_None);
        $result = mpcpy_append($result, Py_None);
    }
}

/* Creation-call error report: returned as the message string (None on
 * success), after the status. */
%typemap(in, numinputs=0, fragment="mpcpy_append") mpc_error *err (mpc_error e) {
    memset(&e, 0, sizeof e);
    $1 = &e;
}
%typemap(argout) mpc_error *err {
    if (result == MPC_OK) {
        Py_INCREF(Py_None);
        $result = mpcpy_append($result, Py_None);
    } else {
        $result = mpcpy_append($result, PyUnicode_DecodeUTF8(e$argnum.message, (Py_ssize_t)strlen(e$argnum.message), "replace"));
    }
}

/* mpc_frame_header(len) -> the header bytes. */
%typemap(in, numinputs=0) unsigned char out[ANY] (unsigned char hbuf[MPC_FRAME_HEADER_MAX]) {
    $1 = hbuf;
}
%typemap(argout) unsigned char out[ANY] {
    Py_XDECREF($result);
    $result = PyBytes_FromStringAndSize((const char *)hbuf$argnum, (Py_ssize_t)result);
}

/* mpc_random(n) -> [status, n random bytes]. */
%typemap(in, fragment="mpcpy_append") (void *buf, size_t len) (PyObject *rbytes = NULL) {
    Py_ssize_t n = PyNumber_AsSsize_t($input, PyExc_OverflowError);
    if (n == -1 && PyErr_Occurred())
        SWIG_fail;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative length");
        SWIG_fail;
    }
    rbytes = PyBytes_FromStringAndSize(NULL, n);
    if (!rbytes)
        SWIG_fail;
    $1 = PyBytes_AS_STRING(rbytes);
    $2 = (size_t)n;
}
%typemap(argout) (void *buf, size_t len) {
    $result = mpcpy_append($result, rbytes$argnum);
    rbytes$argnum = NULL;
}
%typemap(freearg) (void *buf, size_t len) {
    Py_XDECREF(rbytes$argnum);
}

/* mpc_status is an int to Python; _errors.py turns it into an exception. */

/* ------------------------------------------------------------------------
 * Superseded by the hand-written ConnectionBase / ListenerHandle types and
 * module functions below (GIL release, busy tracking, zero-copy buffers).
 * ------------------------------------------------------------------------ */
%ignore mpc_options;
%ignore mpc_options_init;
%ignore mpc_error;
%ignore mpc_buf;
%ignore mpc_listen;
%ignore mpc_listener_accept;
%ignore mpc_listener_address;
%ignore mpc_listener_family;
%ignore mpc_listener_fileno;
%ignore mpc_listener_errmsg;
%ignore mpc_listener_close;
%ignore mpc_listener_set_interrupt;
%ignore mpc_connect;
%ignore mpc_pipe;
%ignore mpc_conn_from_fd;
%ignore mpc_conn_deliver_challenge;
%ignore mpc_conn_answer_challenge;
%ignore mpc_send_bytes;
%ignore mpc_send_many;
%ignore mpc_recv_bytes;
%ignore mpc_recv_bytes_into;
%ignore mpc_recv_begin;
%ignore mpc_recv_payload;
%ignore mpc_recv_alloc_step;
%ignore mpc_poll;
%ignore mpc_wait;
%ignore mpc_conn_fileno;
%ignore mpc_conn_readable;
%ignore mpc_conn_writable;
%ignore mpc_conn_buffered;
%ignore mpc_conn_peer;
%ignore mpc_conn_set_timeout;
%ignore mpc_conn_set_interrupt;
%ignore mpc_conn_status;
%ignore mpc_conn_errmsg;
%ignore mpc_conn_errno;
%ignore mpc_conn_detach;
%ignore mpc_conn_close;

/* The value codec (section 4 of the header) is for C and Lua peers; Python
 * pickles with its own pickle module, as CPython does. */
%rename("$ignore", regextarget=1) "^mpc_(value|vkind|py2str|decode|encode)";
%ignore mpc_send_value;
%ignore mpc_recv_value;
%rename("$ignore", regextarget=1) "^MPC_(V_|VALUE_DEPTH|PY2)";

%include "../mpconn.i"
%include "mpconn.h"

/* ------------------------------------------------------------------------
 * The hand-written part.
 * ------------------------------------------------------------------------ */
%{
/* Registered by _setup(): (status_name, message, errno, payload) ->
 * exception instance; ForkingPickler.dumps; pickle loads. */
static PyObject *mpcpy_error_factory;
static PyObject *mpcpy_dumps;
static PyObject *mpcpy_loads;

/* Raises the exception for status st and returns NULL.  MPC_INTR with a
 * pending Python exception (raised by a signal handler in the interrupt
 * hook, e.g. KeyboardInterrupt) propagates that exception. */
static PyObject *mpcpy_raise(mpc_status st, const char *msg, int sys_errno, PyObject *payload)
{
    PyObject *m, *exc;
    if (PyErr_Occurred())
        return NULL;
    if (!msg || !*msg)
        msg = mpc_strerror(st);
    if (!mpcpy_error_factory) {
        PyErr_SetString(PyExc_OSError, msg);
        return NULL;
    }
    m = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    if (!m)
        return NULL;
    exc = PyObject_CallFunction(mpcpy_error_factory, "sNiO", mpc_status_name(st), m, sys_errno,
                                payload ? payload : Py_None);
    if (!exc)
        return NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *mpcpy_raise_err(const mpc_error *e)
{
    return mpcpy_raise(e->status, e->message, e->sys_errno, NULL);
}

/* The interrupt hook (mpc_options.interrupt): runs Python's signal handlers
 * when a blocking call sees EINTR.  Non-zero (abort the call with MPC_INTR)
 * only if a handler raised; the exception stays set for mpcpy_raise(). */
static int mpcpy_interrupt(void *arg)
{
    PyGILState_STATE g;
    int raised;
    (void)arg;
    g = PyGILState_Ensure();
    raised = PyErr_CheckSignals() < 0;
    PyGILState_Release(g);
    return raised;
}

/* Milliseconds from a Python timeout in seconds: None -> MPC_FOREVER,
 * <= 0 -> 0, otherwise rounded up.  -2 on error (exception set). */
static mpc_ms mpcpy_timeout_ms(PyObject *o, mpc_ms none_value)
{
    double t;
    if (!o || o == Py_None)
        return none_value;
    t = PyFloat_AsDouble(o);
    if (t == -1.0 && PyErr_Occurred())
        return -2;
    if (t != t) {
        PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
        return -2;
    }
    if (t <= 0)
        return 0;
    if (t > 9.2e15)
        return MPC_FOREVER;
    return (mpc_ms)ceil(t * 1000.0);
}

/* Collects the arguments of a METH_FASTCALL | METH_KEYWORDS call into
 * out[0..n) (NULL = not given).  0, or -1 with TypeError set. */
static int mpcpy_args(const char *fname, const char *const *names, Py_ssize_t n,
                      Py_ssize_t required, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, PyObject **out)
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

/* ---------------------------------------------------------------- options */

/* Fills o from the Python-side settings.  key: None (no handshake) or a
 * bytes object (borrowed: must outlive the call that uses o). */
static int mpcpy_options(mpc_options *o, PyObject *key, int dialect, PyObject *digest,
                         mpc_ms hs_ms, mpc_ms conn_ms, int backlog)
{
    mpc_options_init(o);
    if (key && key != Py_None) {
        if (!PyBytes_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "authkey should be a byte string");
            return -1;
        }
        o->authkey = PyBytes_AS_STRING(key);
        o->authkey_len = (size_t)PyBytes_GET_SIZE(key);
    }
    if (digest && digest != Py_None) {
        o->digest = PyUnicode_AsUTF8(digest);
        if (!o->digest)
            return -1;
    }
    o->dialect = (mpc_dialect)dialect;
    o->handshake_timeout = hs_ms;
    o->connect_timeout = conn_ms > 0 ? conn_ms : 0;
    o->backlog = backlog;
    o->interrupt = mpcpy_interrupt;
    o->interrupt_arg = NULL;
    return 0;
}

/* An address in the C syntax, as bytes (an abstract name may hold NUL
 * bytes; the core refuses them anywhere else); *len its length. */
static const char *mpcpy_address(PyObject *a, size_t *len)
{
    if (!PyBytes_Check(a)) {
        PyErr_SetString(PyExc_TypeError, "address must be bytes (internal)");
        return NULL;
    }
    *len = (size_t)PyBytes_GET_SIZE(a);
    return PyBytes_AS_STRING(a);
}

/* ------------------------------------------------------------- Connection */

/* Bumped in a child after fork() (_after_fork_child, registered by the
 * Python layer with os.register_at_fork): busy counts copied from the parent
 * belong to threads that do not exist in the child, so an object whose
 * generation is old has no call in progress here. */
static unsigned long mpcpy_fork_gen;

typedef struct {
    PyObject_HEAD
    mpc_conn *c;
    int busy;          /* calls of this process inside a method (the handle is held) */
    int close_pending; /* close() came while busy: the last call out closes */
    unsigned long gen; /* mpcpy_fork_gen when busy was counted */
    char readable;     /* flags as last seen (kept after close) */
    char writable;
} mpcpy_conn;

static PyTypeObject mpcpy_conn_type;

#define MPCPY_CONN_CHECK(o) PyObject_TypeCheck((o), &mpcpy_conn_type)

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
    if (self->gen != mpcpy_fork_gen) {
        self->gen = mpcpy_fork_gen;
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
        mpcpy_raise(MPC_CLOSED, NULL, 0, NULL);
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
    if (self->gen == mpcpy_fork_gen && self->busy > 0)
        self->busy--;
    if (self->busy == 0 && self->close_pending)
        mpcpy_conn_free(self, 0);
    return r;
}

/* Raises the exception for a failed call on the held handle c. */
static PyObject *mpcpy_conn_fail(mpc_conn *c, mpc_status st)
{
    return mpcpy_raise(st, mpc_conn_errmsg(c), mpc_conn_errno(c), NULL);
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
        mpcpy_raise(write ? MPC_NOTWRITABLE : MPC_NOTREADABLE, NULL, 0, NULL);
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
        mpcpy_raise(write ? MPC_NOTWRITABLE : MPC_NOTREADABLE, NULL, 0, NULL);
        return -1;
    }
    return 0;
}

static PyObject *mpcpy_conn_new_from(PyTypeObject *cls, mpc_conn *c)
{
    mpcpy_conn *self;
    if (!PyType_IsSubtype(cls, &mpcpy_conn_type)) {
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
    self->gen = mpcpy_fork_gen;
    self->readable = (char)mpc_conn_readable(c);
    self->writable = (char)mpc_conn_writable(c);
    mpc_conn_set_interrupt(c, mpcpy_interrupt, NULL);
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
        mpcpy_raise_err(&e);
        return -1;
    }
    self->c = c;
    self->gen = mpcpy_fork_gen;
    self->readable = (char)readable;
    self->writable = (char)writable;
    return 0;
}

static void mpcpy_conn_dealloc(mpcpy_conn *self)
{
    /* No call is in progress: each holds a reference. */
    mpcpy_conn_free(self, 0);
    Py_TYPE(self)->tp_free((PyObject *)self);
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

/* send_bytes(buf, offset=0, size=None) */
static PyObject *mpcpy_conn_send_bytes(mpcpy_conn *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
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
    if (mpcpy_get_buffer(a[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
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
    r = st == MPC_OK ? (Py_INCREF(Py_None), Py_None) : mpcpy_conn_fail(c, st);
    PyBuffer_Release(&view);
    return mpcpy_conn_drop(self, r);
fail:
    PyBuffer_Release(&view);
    return NULL;
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
    ret = st == MPC_OK ? (Py_INCREF(Py_None), Py_None) : mpcpy_conn_fail(c, st);
    mpcpy_conn_drop(self, NULL);
done:
    for (i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(bufs);
    Py_DECREF(fast);
    return ret;
}

/* Reads the rest of a message whose header mpc_recv_begin() accepted
 * (len bytes) into a new bytes object, the handle held.  Memory grows with
 * what arrived, following mpc_recv_alloc_step(), so a hostile header cannot
 * make us allocate its claimed size.  Stopping in the middle (an error, an
 * interrupt, no memory) abandons the message: the connection is broken and
 * says why. */
static PyObject *mpcpy_conn_read_payload(mpc_conn *c, uint64_t len)
{
    PyObject *bytes;
    size_t cap, got = 0;
    mpc_status st = MPC_OK;
    if (len > (uint64_t)PY_SSIZE_T_MAX)
        return mpcpy_raise(MPC_TOOLONG, NULL, 0, NULL);
    cap = len ? mpc_recv_alloc_step(len, 0) : 0;
    if (cap > len)
        cap = (size_t)len;
    if (len && cap == 0)
        cap = (size_t)(len < 65536 ? len : 65536);
    bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (!bytes) {
        mpc_recv_abandon(c);
        return NULL;
    }
    while (got < len) {
        size_t n;
        char *dst;
        if (got == cap) {
            size_t want = mpc_recv_alloc_step(len, got);
            if (want > len)
                want = (size_t)len;
            if (want <= got)
                want = got + (size_t)((len - got) < 65536 ? (len - got) : 65536);
            if (_PyBytes_Resize(&bytes, (Py_ssize_t)want) < 0) {
                mpc_recv_abandon(c);
                return NULL;
            }
            cap = want;
        }
        n = cap - got;
        dst = PyBytes_AS_STRING(bytes) + got;
        MPCPY_UNLOCKED(st = mpc_recv_payload(c, dst, n));
        if (st != MPC_OK) {
            Py_DECREF(bytes);
            if (st != MPC_EOF || got > 0)
                mpc_recv_abandon(c);
            return mpcpy_conn_fail(c, st);
        }
        got += n;
    }
    return bytes;
}

/* One whole message as bytes (the handle held, readable). */
static PyObject *mpcpy_conn_recv_message(mpc_conn *c, size_t maxlength)
{
    uint64_t len = 0;
    mpc_status st;
    const void *view;
    size_t vlen;
    if (mpc_recv_peek(c, maxlength, &view, &vlen) == MPC_OK) {
        /* Whole in the read-ahead buffer: copied once, then consumed (a
         * failed allocation leaves the message on the stream; allocating
         * a bytes object runs no Python code). */
        PyObject *bytes = PyBytes_FromStringAndSize((const char *)view, (Py_ssize_t)vlen);
        if (bytes)
            mpc_recv_consume(c);
        return bytes;
    }
    if (mpc_conn_buffered(c) >= MPC_FRAME_HEADER_MAX)
        st = mpc_recv_begin(c, maxlength, &len); /* cannot block */
    else
        MPCPY_UNLOCKED(st = mpc_recv_begin(c, maxlength, &len));
    if (st != MPC_OK)
        return mpcpy_conn_fail(c, st);
    if (len == 0) {
        /* An empty message is complete once begun. */
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    return mpcpy_conn_read_payload(c, len);
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

/* recv_bytes(maxlength=None) */
static PyObject *mpcpy_conn_recv_bytes(mpcpy_conn *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
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
    return mpcpy_conn_drop(self, mpcpy_conn_recv_message(c, maxlength));
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
        PyObject *msg = mpcpy_conn_recv_message(c, MPC_NO_LIMIT);
        if (msg) {
            mpcpy_raise(MPC_TOOSHORT, NULL, 0, msg);
            Py_DECREF(msg);
        }
        r = NULL;
    } else {
        r = st == MPC_OK ? PyLong_FromSize_t(len) : mpcpy_conn_fail(c, st);
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
    return mpcpy_conn_drop(self, st == MPC_OK ? PyBool_FromLong(ready) : mpcpy_conn_fail(c, st));
}

/* send(obj): ForkingPickler.dumps(obj), then one message. */
static PyObject *mpcpy_conn_send(mpcpy_conn *self, PyObject *obj)
{
    PyObject *data, *r;
    mpc_conn *c;
    Py_buffer view;
    mpc_status st;
    if (mpcpy_conn_precheck(self, 1) < 0)
        return NULL;
    if (!mpcpy_dumps) {
        PyErr_SetString(PyExc_RuntimeError, "mpconn not set up");
        return NULL;
    }
    data = PyObject_CallFunctionObjArgs(mpcpy_dumps, obj, NULL);
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
        MPCPY_UNLOCKED(st = mpc_send_bytes(c, view.buf, (size_t)view.len));
        r = st == MPC_OK ? (Py_INCREF(Py_None), Py_None) : mpcpy_conn_fail(c, st);
        mpcpy_conn_drop(self, NULL);
    }
    PyBuffer_Release(&view);
    Py_DECREF(data);
    return r;
}

/* recv(): one message, unpickled. */
static PyObject *mpcpy_conn_recv(mpcpy_conn *self, PyObject *unused)
{
    PyObject *data, *r;
    mpc_conn *c;
    (void)unused;
    if (!mpcpy_loads) {
        PyErr_SetString(PyExc_RuntimeError, "mpconn not set up");
        return NULL;
    }
    if (!(c = mpcpy_conn_hold_dir(self, 0)))
        return NULL;
    data = mpcpy_conn_drop(self, mpcpy_conn_recv_message(c, MPC_NO_LIMIT));
    if (!data)
        return NULL;
    r = PyObject_CallFunctionObjArgs(mpcpy_loads, data, NULL);
    Py_DECREF(data);
    return r;
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

static PyObject *mpcpy_conn_peer(mpcpy_conn *self, PyObject *unused)
{
    mpc_conn *c = mpcpy_conn_get(self);
    (void)unused;
    return c ? PyUnicode_FromString(mpc_conn_peer(c)) : NULL;
}

static PyObject *mpcpy_conn_set_timeout(mpcpy_conn *self, PyObject *t)
{
    mpc_conn *c;
    mpc_ms ms = mpcpy_timeout_ms(t, 0);
    if (ms == -2)
        return NULL;
    if (t != Py_None && ms == 0)
        ms = 1;
    if (!(c = mpcpy_conn_get(self)))
        return NULL;
    mpc_conn_set_timeout(c, ms);
    Py_RETURN_NONE;
}

/* _set_read_ahead(flag) */
static PyObject *mpcpy_conn_set_read_ahead(mpcpy_conn *self, PyObject *flag)
{
    mpc_conn *c;
    int on = PyObject_IsTrue(flag);
    if (on < 0)
        return NULL;
    if (!(c = mpcpy_conn_get(self)))
        return NULL;
    if (mpc_conn_set_read_ahead(c, on) != MPC_OK)
        return mpcpy_raise(MPC_INVAL, mpc_conn_errmsg(c), 0, NULL);
    Py_RETURN_NONE;
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
                                              : mpcpy_conn_fail(c, st));
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
    {"recv", (PyCFunction)mpcpy_conn_recv, METH_NOARGS, "Receive a (picklable) object"},
    {"fileno", (PyCFunction)mpcpy_conn_fileno, METH_NOARGS, "File descriptor or handle of the connection"},
    {"close", (PyCFunction)mpcpy_conn_close, METH_NOARGS, "Close the connection"},
    {"_detach", (PyCFunction)mpcpy_conn_detach, METH_NOARGS, NULL},
    {"_buffered", (PyCFunction)mpcpy_conn_buffered, METH_NOARGS, NULL},
    {"_peer", (PyCFunction)mpcpy_conn_peer, METH_NOARGS, NULL},
    {"_set_timeout", (PyCFunction)mpcpy_conn_set_timeout, METH_O, NULL},
    {"_set_read_ahead", (PyCFunction)mpcpy_conn_set_read_ahead, METH_O, NULL},
    {"_handshake", (PyCFunction)mpcpy_conn_handshake, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef mpcpy_conn_getset[] = {
    {"closed", (getter)mpcpy_conn_get_closed, NULL, "True if the connection is closed", NULL},
    {"readable", (getter)mpcpy_conn_get_readable_flag, NULL, "True if the connection is readable", NULL},
    {"writable", (getter)mpcpy_conn_get_writable_flag, NULL, "True if the connection is writable", NULL},
    {"read_ahead", (getter)mpcpy_conn_get_read_ahead, NULL,
     "True if the connection reads ahead (see mpconn.Pipe(read_ahead=))", NULL},
    {"_handle", (getter)mpcpy_conn_get_handle, (setter)mpcpy_conn_set_handle, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject mpcpy_conn_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    "mpconn._mpconn.ConnectionBase", /* tp_name */
    sizeof(mpcpy_conn),               /* tp_basicsize */
    0,                                /* tp_itemsize */
};

/* --------------------------------------------------------------- Listener */

typedef struct {
    PyObject_HEAD
    mpc_listener *l;
    int busy;          /* accept() calls of this process in progress */
    int close_pending; /* close() came while busy */
    unsigned long gen; /* mpcpy_fork_gen when busy was counted */
} mpcpy_listener;

static PyTypeObject mpcpy_listener_type;

/* Closes the socket (the core unlinks a socket file only in the process
 * that created it, as CPython's Finalize) and frees the listener. */
static void mpcpy_listener_free(mpcpy_listener *self)
{
    mpc_listener *l = self->l;
    if (!l)
        return;
    self->l = NULL;
    self->close_pending = 0;
    mpc_listener_close(l);
}

static void mpcpy_listener_sync(mpcpy_listener *self)
{
    if (self->gen != mpcpy_fork_gen) {
        self->gen = mpcpy_fork_gen;
        self->busy = 0;
        if (self->close_pending)
            mpcpy_listener_free(self);
    }
}

static mpc_listener *mpcpy_listener_get(mpcpy_listener *self)
{
    mpcpy_listener_sync(self);
    if (!self->l || self->close_pending) {
        PyErr_SetString(PyExc_OSError, "listener is closed");
        return NULL;
    }
    return self->l;
}

static void mpcpy_listener_dealloc(mpcpy_listener *self)
{
    mpcpy_listener_free(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* accept(cls, timeout=None) -> cls instance */
static PyObject *mpcpy_listener_accept(mpcpy_listener *self, PyObject *args)
{
    PyTypeObject *cls;
    PyObject *timeout = Py_None;
    mpc_listener *l;
    mpc_conn *c = NULL;
    mpc_error e;
    mpc_status st;
    mpc_ms ms;
    if (!PyArg_ParseTuple(args, "O!|O:accept", &PyType_Type, &cls, &timeout))
        return NULL;
    ms = mpcpy_timeout_ms(timeout, MPC_FOREVER);
    if (ms == -2)
        return NULL;
    if (!(l = mpcpy_listener_get(self)))
        return NULL;
    memset(&e, 0, sizeof e);
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    st = mpc_listener_accept(l, ms, &c, &e);
    Py_END_ALLOW_THREADS
    if (self->gen == mpcpy_fork_gen && self->busy > 0)
        self->busy--;
    if (self->close_pending) {
        if (self->busy == 0)
            mpcpy_listener_free(self);
        if (st == MPC_OK)
            mpc_conn_close(c);
        if (st != MPC_INTR || !PyErr_Occurred())
            PyErr_SetString(PyExc_OSError, "listener is closed");
        return NULL;
    }
    if (st != MPC_OK)
        return mpcpy_raise_err(&e);
    return mpcpy_conn_new_from(cls, c);
}

/* close(): while accept() waits in another thread of this process, wakes it
 * (an eventfd, nothing another process sharing the socket can see) and lets
 * it finish the close. */
static PyObject *mpcpy_listener_close(mpcpy_listener *self, PyObject *unused)
{
    (void)unused;
    mpcpy_listener_sync(self);
    if (!self->l || self->close_pending)
        Py_RETURN_NONE;
    if (self->busy) {
        self->close_pending = 1;
        mpc_listener_wake(self->l);
        Py_RETURN_NONE;
    }
    mpcpy_listener_free(self);
    Py_RETURN_NONE;
}

static PyObject *mpcpy_listener_fileno(mpcpy_listener *self, PyObject *unused)
{
    mpc_listener *l = mpcpy_listener_get(self);
    (void)unused;
    return l ? PyLong_FromLong(mpc_listener_fileno(l)) : NULL;
}

static PyObject *mpcpy_listener_address(mpcpy_listener *self, PyObject *unused)
{
    mpc_listener *l = mpcpy_listener_get(self);
    (void)unused;
    return l ? PyUnicode_DecodeFSDefault(mpc_listener_address(l)) : NULL;
}

/* The last client's address as the core has it ("" for Unix sockets), also
 * after its handshake failed. */
static PyObject *mpcpy_listener_last_peer(mpcpy_listener *self, PyObject *unused)
{
    mpc_listener *l = mpcpy_listener_get(self);
    (void)unused;
    return l ? PyUnicode_FromString(mpc_listener_last_peer(l)) : NULL;
}

static PyObject *mpcpy_listener_family(mpcpy_listener *self, PyObject *unused)
{
    mpc_listener *l = mpcpy_listener_get(self);
    (void)unused;
    return l ? PyUnicode_FromString(mpc_listener_family(l)) : NULL;
}

static PyObject *mpcpy_listener_get_closed(mpcpy_listener *self, void *unused)
{
    (void)unused;
    mpcpy_listener_sync(self);
    return PyBool_FromLong(!self->l || self->close_pending);
}

static PyMethodDef mpcpy_listener_methods[] = {
    {"accept", (PyCFunction)mpcpy_listener_accept, METH_VARARGS, NULL},
    {"close", (PyCFunction)mpcpy_listener_close, METH_NOARGS, NULL},
    {"fileno", (PyCFunction)mpcpy_listener_fileno, METH_NOARGS, NULL},
    {"address", (PyCFunction)mpcpy_listener_address, METH_NOARGS, NULL},
    {"family", (PyCFunction)mpcpy_listener_family, METH_NOARGS, NULL},
    {"last_peer", (PyCFunction)mpcpy_listener_last_peer, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef mpcpy_listener_getset[] = {
    {"closed", (getter)mpcpy_listener_get_closed, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject mpcpy_listener_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    "mpconn._mpconn.ListenerHandle", /* tp_name */
    sizeof(mpcpy_listener),          /* tp_basicsize */
    0,                               /* tp_itemsize */
};

/* ------------------------------------------------------- module functions */

/* listen(address: bytes, authkey, backlog, dialect, digest, handshake_timeout) */
static PyObject *mpcpy_listen(PyObject *mod, PyObject *args)
{
    PyObject *addr, *key, *digest, *hs;
    int backlog, dialect;
    mpc_options o;
    mpc_error e;
    mpc_listener *l = NULL;
    mpcpy_listener *self;
    const char *a;
    mpc_ms hs_ms;
    mpc_status st;
    size_t alen = 0;
    (void)mod;
    if (!PyArg_ParseTuple(args, "OOiiOO:listen", &addr, &key, &backlog, &dialect, &digest, &hs))
        return NULL;
    if (!(a = mpcpy_address(addr, &alen)))
        return NULL;
    hs_ms = mpcpy_timeout_ms(hs, MPC_FOREVER);
    if (hs_ms == -2)
        return NULL;
    if (hs_ms == 0)
        hs_ms = 1;
    if (mpcpy_options(&o, key, dialect, digest, hs_ms, 0, backlog) < 0)
        return NULL;
    memset(&e, 0, sizeof e);
    Py_BEGIN_ALLOW_THREADS
    st = mpc_listen_n(a, alen, &o, &l, &e);
    Py_END_ALLOW_THREADS
    if (st != MPC_OK)
        return mpcpy_raise_err(&e);
    mpc_listener_set_interrupt(l, mpcpy_interrupt, NULL);
    self = PyObject_New(mpcpy_listener, &mpcpy_listener_type);
    if (!self) {
        mpc_listener_close(l);
        return NULL;
    }
    self->l = l;
    self->busy = 0;
    self->close_pending = 0;
    self->gen = mpcpy_fork_gen;
    return (PyObject *)self;
}

/* connect(cls, address: bytes, authkey, dialect, digest, timeout) */
static PyObject *mpcpy_connect(PyObject *mod, PyObject *args)
{
    PyTypeObject *cls;
    PyObject *addr, *key, *digest, *timeout;
    int dialect;
    mpc_options o;
    mpc_error e;
    mpc_conn *c = NULL;
    const char *a;
    mpc_ms ms, hs_ms;
    mpc_status st;
    size_t alen = 0;
    (void)mod;
    if (!PyArg_ParseTuple(args, "O!OOiOO:connect", &PyType_Type, &cls, &addr, &key, &dialect,
                          &digest, &timeout))
        return NULL;
    if (!(a = mpcpy_address(addr, &alen)))
        return NULL;
    ms = mpcpy_timeout_ms(timeout, 0);
    if (ms == -2)
        return NULL;
    if (timeout != Py_None && ms == 0)
        ms = 1;
    hs_ms = ms > 0 ? ms : MPC_FOREVER;
    if (mpcpy_options(&o, key, dialect, digest, hs_ms, ms, 0) < 0)
        return NULL;
    memset(&e, 0, sizeof e);
    Py_BEGIN_ALLOW_THREADS
    st = mpc_connect_n(a, alen, &o, &c, &e);
    Py_END_ALLOW_THREADS
    if (st != MPC_OK)
        return mpcpy_raise_err(&e);
    return mpcpy_conn_new_from(cls, c);
}

/* pipe(cls, duplex) -> (a, b) */
static PyObject *mpcpy_pipe(PyObject *mod, PyObject *args)
{
    PyTypeObject *cls;
    int duplex;
    mpc_options o;
    mpc_error e;
    mpc_conn *a = NULL, *b = NULL;
    PyObject *pa, *pb;
    mpc_status st;
    (void)mod;
    if (!PyArg_ParseTuple(args, "O!p:pipe", &PyType_Type, &cls, &duplex))
        return NULL;
    mpc_options_init(&o);
    o.interrupt = mpcpy_interrupt;
    memset(&e, 0, sizeof e);
    st = mpc_pipe(duplex, &o, &a, &b, &e);
    if (st != MPC_OK)
        return mpcpy_raise_err(&e);
    pa = mpcpy_conn_new_from(cls, a);
    if (!pa) {
        mpc_conn_close(b);
        return NULL;
    }
    pb = mpcpy_conn_new_from(cls, b);
    if (!pb) {
        Py_DECREF(pa);
        return NULL;
    }
    return Py_BuildValue("(NN)", pa, pb);
}

/* _setup(error_factory, dumps, loads) */
static PyObject *mpcpy_setup(PyObject *mod, PyObject *args)
{
    PyObject *f, *d, *l;
    (void)mod;
    if (!PyArg_ParseTuple(args, "OOO:_setup", &f, &d, &l))
        return NULL;
    Py_INCREF(f);
    Py_INCREF(d);
    Py_INCREF(l);
    Py_XDECREF(mpcpy_error_factory);
    Py_XDECREF(mpcpy_dumps);
    Py_XDECREF(mpcpy_loads);
    mpcpy_error_factory = f;
    mpcpy_dumps = d;
    mpcpy_loads = l;
    Py_RETURN_NONE;
}

/* _after_fork_child(): registered with os.register_at_fork by the Python
 * layer (see mpcpy_fork_gen). */
static PyObject *mpcpy_after_fork_child(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    mpcpy_fork_gen++;
    Py_RETURN_NONE;
}

static PyMethodDef mpcpy_functions[] = {
    {"_after_fork_child", mpcpy_after_fork_child, METH_NOARGS, NULL},
    {"listen", mpcpy_listen, METH_VARARGS, NULL},
    {"connect", mpcpy_connect, METH_VARARGS, NULL},
    {"pipe", mpcpy_pipe, METH_VARARGS, NULL},
    {"_setup", mpcpy_setup, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static int mpcpy_module_init(PyObject *m)
{
    mpcpy_conn_type.tp_dealloc = (destructor)mpcpy_conn_dealloc;
    mpcpy_conn_type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE;
    mpcpy_conn_type.tp_doc = "The C part of mpconn.Connection (one mpc_conn).";
    mpcpy_conn_type.tp_methods = mpcpy_conn_methods;
    mpcpy_conn_type.tp_getset = mpcpy_conn_getset;
    mpcpy_conn_type.tp_init = (initproc)mpcpy_conn_init;
    mpcpy_conn_type.tp_new = PyType_GenericNew;
    if (PyType_Ready(&mpcpy_conn_type) < 0)
        return -1;
    mpcpy_listener_type.tp_dealloc = (destructor)mpcpy_listener_dealloc;
    mpcpy_listener_type.tp_flags = Py_TPFLAGS_DEFAULT;
    mpcpy_listener_type.tp_doc = "One mpc_listener (used by mpconn.Listener).";
    mpcpy_listener_type.tp_methods = mpcpy_listener_methods;
    mpcpy_listener_type.tp_getset = mpcpy_listener_getset;
    if (PyType_Ready(&mpcpy_listener_type) < 0)
        return -1;
    Py_INCREF(&mpcpy_conn_type);
    if (PyModule_AddObject(m, "ConnectionBase", (PyObject *)&mpcpy_conn_type) < 0)
        return -1;
    Py_INCREF(&mpcpy_listener_type);
    if (PyModule_AddObject(m, "ListenerHandle", (PyObject *)&mpcpy_listener_type) < 0)
        return -1;
    return PyModule_AddFunctions(m, mpcpy_functions);
}
%}

%init %{
    if (mpcpy_module_init(m) < 0) {
#if SWIG_VERSION >= 0x040200
        return -1;
#else
        return NULL;
#endif
    }
%}

/* Names the Python layer reads from _core (the SWIG module re-exports them
 * from the extension). */
%pythoncode %{
ConnectionBase = _core.ConnectionBase
ListenerHandle = _core.ListenerHandle
listen = _core.listen
connect = _core.connect
pipe = _core.pipe
_setup = _core._setup
_after_fork_child = _core._after_fork_child
%}
