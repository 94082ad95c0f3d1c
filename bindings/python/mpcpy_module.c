/*
 * mpcpy_module.c - the Python extension's module part: its state (see
 * mpcpy.h), the status-to-exception hand-off, the helpers the types share,
 * and the functions that make handles (listen, connect, pipe).
 *
 * Statuses are turned into exceptions by ONE table in
 * python/mpconn/_errors.py (registered with _setup()); the module exports
 * STATUS_NAMES, made from the core's status X-macro, and _errors.py checks
 * at import that every name has an entry.
 */
#include "mpcpy.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ state */

static int mpcpy_state_traverse(PyObject *mod, visitproc visit, void *arg);
static int mpcpy_state_clear(PyObject *mod);
static void mpcpy_state_free(void *mod);

static struct PyModuleDef mpcpy_state_def = {
    PyModuleDef_HEAD_INIT,
    "mpconn._mpconn._state",
    "The state of the mpconn extension (its types and registered callables).",
    sizeof(mpcpy_state),
    NULL,
    NULL,
    mpcpy_state_traverse,
    mpcpy_state_clear,
    mpcpy_state_free,
};

static mpcpy_state *mpcpy_state_get(PyObject *mod)
{
    return (mpcpy_state *)PyModule_GetState(mod);
}

static int mpcpy_state_traverse(PyObject *mod, visitproc visit, void *arg)
{
    mpcpy_state *s = mpcpy_state_get(mod);
    if (!s)
        return 0;
    Py_VISIT(s->conn_type);
    Py_VISIT(s->listener_type);
    Py_VISIT(s->error_factory);
    Py_VISIT(s->dumps);
    Py_VISIT(s->loads);
    Py_VISIT(s->restricted_error);
    Py_VISIT(s->again);
    return 0;
}

static int mpcpy_state_clear(PyObject *mod)
{
    mpcpy_state *s = mpcpy_state_get(mod);
    if (!s)
        return 0;
    Py_CLEAR(s->conn_type);
    Py_CLEAR(s->listener_type);
    Py_CLEAR(s->error_factory);
    Py_CLEAR(s->dumps);
    Py_CLEAR(s->loads);
    Py_CLEAR(s->restricted_error);
    Py_CLEAR(s->again);
    return 0;
}

static void mpcpy_state_free(void *mod)
{
    (void)mpcpy_state_clear((PyObject *)mod);
}

#if PY_VERSION_HEX < 0x03090000
/* 3.8: types cannot name their module; the one state is found here. */
static mpcpy_state *mpcpy_state_38;
#endif

mpcpy_state *mpcpy_state_of_type(PyTypeObject *t)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *mod = PyType_GetModuleByDef(t, &mpcpy_state_def);
    if (!mod) {
        PyErr_Clear();
        return NULL;
    }
    return mpcpy_state_get(mod);
#elif PY_VERSION_HEX >= 0x03090000
    PyObject *mro = t->tp_mro;
    Py_ssize_t i, n = mro ? PyTuple_GET_SIZE(mro) : 0;
    for (i = 0; i < n; i++) {
        PyTypeObject *b = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (PyType_HasFeature(b, Py_TPFLAGS_HEAPTYPE)) {
            PyObject *mod = ((PyHeapTypeObject *)b)->ht_module;
            if (mod && PyModule_GetDef(mod) == &mpcpy_state_def)
                return mpcpy_state_get(mod);
        }
    }
    return NULL;
#else
    mpcpy_state *s = mpcpy_state_38;
    if (s && (PyType_IsSubtype(t, s->conn_type) || PyType_IsSubtype(t, s->listener_type)))
        return s;
    return NULL;
#endif
}

/* ----------------------------------------------------------------- errors */

PyObject *mpcpy_raise(const mpcpy_state *s, mpc_status st, const char *msg, int sys_errno,
                      PyObject *payload)
{
    PyObject *m, *exc;
    if (PyErr_Occurred())
        return NULL;
    if (!msg || !*msg)
        msg = mpc_strerror(st);
    if (!s || !s->error_factory) {
        PyErr_SetString(PyExc_OSError, msg);
        return NULL;
    }
    m = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    if (!m)
        return NULL;
    exc = PyObject_CallFunction(s->error_factory, "sNiO", mpc_status_name(st), m, sys_errno,
                                payload ? payload : Py_None);
    if (!exc)
        return NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

PyObject *mpcpy_raise_err(const mpcpy_state *s, const mpc_error *e)
{
    return mpcpy_raise(s, e->status, e->message, e->sys_errno, NULL);
}

/* Runs Python's signal handlers when a blocking call sees EINTR.  Non-zero
 * (abort the call with MPC_INTR) only if a handler raised; the exception
 * stays set for mpcpy_raise(). */
int mpcpy_interrupt(void *arg)
{
    PyGILState_STATE g;
    int raised;
    (void)arg;
    g = PyGILState_Ensure();
    raised = PyErr_CheckSignals() < 0;
    PyGILState_Release(g);
    return raised;
}

/* ---------------------------------------------------------------- helpers */

mpc_ms mpcpy_timeout_ms(PyObject *o, mpc_ms none_value)
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

int mpcpy_options(mpc_options *o, PyObject *key, int dialect, PyObject *digest, mpc_ms hs_ms,
                  mpc_ms conn_ms, int backlog)
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

/* The TLS settings mpconn.TLS hands over: None (plaintext) or a tuple
 * (certfile, keyfile, cafile, capath, server_hostname, verify), the paths
 * bytes (os.fsencode) or None, the name str or None.  *o points into the
 * tuple's objects, which outlive the call that uses it.  1 when TLS is
 * asked for, 0 for None, -1 with an exception. */
static int mpcpy_tls(PyObject *t, mpc_tls_options *o)
{
    PyObject *f[4];
    PyObject *name;
    int verify;
    memset(o, 0, sizeof *o);
    if (!t || t == Py_None)
        return 0;
    if (!PyArg_ParseTuple(t, "OOOOOp:tls", &f[0], &f[1], &f[2], &f[3], &name, &verify))
        return -1;
    const char **dst[4] = {&o->certificate, &o->key, &o->cafile, &o->capath};
    for (int i = 0; i < 4; i++) {
        if (f[i] == Py_None)
            continue;
        if (!PyBytes_Check(f[i])) {
            PyErr_SetString(PyExc_TypeError, "TLS paths must be bytes (internal)");
            return -1;
        }
        *dst[i] = PyBytes_AS_STRING(f[i]);
    }
    if (name != Py_None && !(o->server_name = PyUnicode_AsUTF8(name)))
        return -1;
    o->no_verify = !verify;
    return 1;
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

/* ------------------------------------------------------- module functions */

/* listen(address: bytes, authkey, backlog, dialect, digest, handshake_timeout,
 * tls=None) */
static PyObject *mpcpy_listen(PyObject *mod, PyObject *args)
{
    mpcpy_state *s = mpcpy_state_get(mod);
    PyObject *addr, *key, *digest, *hs, *tls = Py_None;
    int backlog, dialect;
    mpc_options o;
    mpc_tls_options t;
    mpc_error e;
    mpc_listener *l = NULL;
    const char *a;
    mpc_ms hs_ms;
    mpc_status st;
    size_t alen = 0;
    if (!PyArg_ParseTuple(args, "OOiiOO|O:listen", &addr, &key, &backlog, &dialect, &digest, &hs,
                          &tls))
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
    switch (mpcpy_tls(tls, &t)) {
    case -1: return NULL;
    case 1: o.tls = &t; break;
    default: break;
    }
    memset(&e, 0, sizeof e);
    Py_BEGIN_ALLOW_THREADS
    st = mpc_listen_n(a, alen, &o, &l, &e);
    Py_END_ALLOW_THREADS
    if (st != MPC_OK)
        return mpcpy_raise_err(s, &e);
    return mpcpy_listener_new_from(s, l);
}

/* connect(cls, address: bytes, authkey, dialect, digest, timeout,
 * nonblocking=False, tls=None): non-blocking, it returns once the connect
 * has started, and the connection's _flush() finishes connect and
 * handshakes. */
static PyObject *mpcpy_connect(PyObject *mod, PyObject *args)
{
    mpcpy_state *s = mpcpy_state_get(mod);
    PyTypeObject *cls;
    PyObject *addr, *key, *digest, *timeout, *tls = Py_None;
    int dialect, nonblocking = 0;
    mpc_options o;
    mpc_tls_options t;
    mpc_error e;
    mpc_conn *c = NULL;
    const char *a;
    mpc_ms ms, hs_ms;
    mpc_status st;
    size_t alen = 0;
    if (!PyArg_ParseTuple(args, "O!OOiOO|pO:connect", &PyType_Type, &cls, &addr, &key, &dialect,
                          &digest, &timeout, &nonblocking, &tls))
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
    o.nonblocking = nonblocking;
    switch (mpcpy_tls(tls, &t)) {
    case -1: return NULL;
    case 1: o.tls = &t; break;
    default: break;
    }
    memset(&e, 0, sizeof e);
    Py_BEGIN_ALLOW_THREADS
    st = mpc_connect_n(a, alen, &o, &c, &e);
    Py_END_ALLOW_THREADS
    if (st != MPC_OK)
        return mpcpy_raise_err(s, &e);
    return mpcpy_conn_new_from(s, cls, c);
}

/* pipe(cls, duplex) -> (a, b) */
static PyObject *mpcpy_pipe(PyObject *mod, PyObject *args)
{
    mpcpy_state *s = mpcpy_state_get(mod);
    PyTypeObject *cls;
    int duplex;
    mpc_options o;
    mpc_error e;
    mpc_conn *a = NULL, *b = NULL;
    PyObject *pa, *pb;
    mpc_status st;
    if (!PyArg_ParseTuple(args, "O!p:pipe", &PyType_Type, &cls, &duplex))
        return NULL;
    mpc_options_init(&o);
    o.interrupt = mpcpy_interrupt;
    memset(&e, 0, sizeof e);
    st = mpc_pipe(duplex, &o, &a, &b, &e);
    if (st != MPC_OK)
        return mpcpy_raise_err(s, &e);
    pa = mpcpy_conn_new_from(s, cls, a);
    if (!pa) {
        mpc_conn_close(b);
        return NULL;
    }
    pb = mpcpy_conn_new_from(s, cls, b);
    if (!pb) {
        Py_DECREF(pa);
        return NULL;
    }
    return Py_BuildValue("(NN)", pa, pb);
}

/* _setup(error_factory, dumps, loads[, restricted_error]) */
static PyObject *mpcpy_setup(PyObject *mod, PyObject *args)
{
    mpcpy_state *s = mpcpy_state_get(mod);
    PyObject *f, *d, *l, *r = NULL;
    if (!PyArg_ParseTuple(args, "OOO|O:_setup", &f, &d, &l, &r))
        return NULL;
    Py_INCREF(f);
    Py_INCREF(d);
    Py_INCREF(l);
    Py_XINCREF(r);
    Py_XSETREF(s->error_factory, f);
    Py_XSETREF(s->dumps, d);
    Py_XSETREF(s->loads, l);
    Py_XSETREF(s->restricted_error, r);
    Py_RETURN_NONE;
}

/* _restricted_loads(data): restricted unpickling of a bytes-like object
 * (what recv(restricted=True) does with a message; mpcpy_values.c). */
static PyObject *mpcpy_restricted_loads_fn(PyObject *mod, PyObject *arg)
{
    mpcpy_state *s = mpcpy_state_get(mod);
    Py_buffer view;
    PyObject *r;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    r = mpcpy_restricted_loads(s, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return r;
}

/* _after_fork_child(): registered with os.register_at_fork by the Python
 * layer (see mpcpy_state.fork_gen). */
static PyObject *mpcpy_after_fork_child(PyObject *mod, PyObject *unused)
{
    (void)unused;
    mpcpy_state_get(mod)->fork_gen++;
    Py_RETURN_NONE;
}

static PyMethodDef mpcpy_functions[] = {
    {"_after_fork_child", mpcpy_after_fork_child, METH_NOARGS, NULL},
    {"listen", mpcpy_listen, METH_VARARGS, NULL},
    {"connect", mpcpy_connect, METH_VARARGS, NULL},
    {"pipe", mpcpy_pipe, METH_VARARGS, NULL},
    {"_setup", mpcpy_setup, METH_VARARGS, NULL},
    {"_restricted_loads", mpcpy_restricted_loads_fn, METH_O, NULL},
    {NULL, NULL, 0, NULL}};

/* ----------------------------------------------------------------- init */

static PyTypeObject *mpcpy_make_type(PyObject *state_mod, PyType_Spec *spec)
{
#if PY_VERSION_HEX >= 0x03090000
    return (PyTypeObject *)PyType_FromModuleAndSpec(state_mod, spec, NULL);
#else
    (void)state_mod;
    return (PyTypeObject *)PyType_FromSpec(spec);
#endif
}

/* ("OK", "EOF", ...): every status of the core, from its X-macro. */
static PyObject *mpcpy_status_names(void)
{
#define MPCPY_STATUS_NAME(name, value, msg) #name,
    static const char *const names[] = {MPC_STATUS_MAP(MPCPY_STATUS_NAME)};
#undef MPCPY_STATUS_NAME
    Py_ssize_t i, n = (Py_ssize_t)(sizeof names / sizeof names[0]);
    PyObject *t = PyTuple_New(n);
    if (!t)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *u = PyUnicode_FromString(names[i]);
        if (!u) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, u);
    }
    return t;
}

int mpcpy_module_init(PyObject *m)
{
    PyObject *state_mod, *name, *names;
    PyMethodDef *def;
    mpcpy_state *s;
    state_mod = PyModule_Create(&mpcpy_state_def);
    if (!state_mod)
        return -1;
    /* m owns the state module from here on (also on failure below). */
    if (PyModule_AddObject(m, "_state", state_mod) < 0) {
        Py_DECREF(state_mod);
        return -1;
    }
    s = mpcpy_state_get(state_mod);
    s->conn_type = mpcpy_make_type(state_mod, &mpcpy_conn_spec);
    if (!s->conn_type)
        return -1;
    s->listener_type = mpcpy_make_type(state_mod, &mpcpy_listener_spec);
    if (!s->listener_type)
        return -1;
#if PY_VERSION_HEX < 0x030A0000
    /* No Py_TPFLAGS_DISALLOW_INSTANTIATION before 3.10: handles come from
     * listen() only. */
    s->listener_type->tp_new = NULL;
#endif
#if PY_VERSION_HEX < 0x03090000
    mpcpy_state_38 = s;
#endif
    Py_INCREF(s->conn_type);
    if (PyModule_AddObject(m, "ConnectionBase", (PyObject *)s->conn_type) < 0) {
        Py_DECREF(s->conn_type);
        return -1;
    }
    Py_INCREF(s->listener_type);
    if (PyModule_AddObject(m, "ListenerHandle", (PyObject *)s->listener_type) < 0) {
        Py_DECREF(s->listener_type);
        return -1;
    }
    name = PyModule_GetNameObject(m);
    if (!name)
        return -1;
    for (def = mpcpy_functions; def->ml_name; def++) {
        PyObject *f = PyCFunction_NewEx(def, state_mod, name);
        if (!f || PyModule_AddObject(m, def->ml_name, f) < 0) {
            Py_XDECREF(f);
            Py_DECREF(name);
            return -1;
        }
    }
    Py_DECREF(name);
    s->again = PyObject_CallObject((PyObject *)&PyBaseObject_Type, NULL);
    if (!s->again)
        return -1;
    Py_INCREF(s->again);
    if (PyModule_AddObject(m, "_AGAIN", s->again) < 0) {
        Py_DECREF(s->again);
        return -1;
    }
    names = mpcpy_status_names();
    if (!names || PyModule_AddObject(m, "STATUS_NAMES", names) < 0) {
        Py_XDECREF(names);
        return -1;
    }
    return 0;
}
