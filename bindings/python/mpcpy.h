/*
 * mpcpy.h - private header of the Python extension's hand-written part
 * (mpcpy_module.c, mpcpy_conn.c, mpcpy_listener.c, mpcpy_values.c) and of the SWIG
 * interface that registers it (mpconn_python.i).
 *
 * State: the extension keeps no static globals.  What the module needs
 * (its two heap types, the error factory, ForkingPickler.dumps, pickle
 * loads, the fork generation) lives in an mpcpy_state, the per-module state
 * of a module object made by mpcpy_module_init() (SWIG 4.1 creates the
 * extension module itself, single-phase with m_size -1, so the state has a
 * module object of its own, exported as _mpconn._state).  The types are
 * created with PyType_FromModuleAndSpec() on that module (3.9+); each
 * object keeps a pointer to the state, so the hot path reaches it in one
 * load.  Python 3.8 has no module-bound types: there the one state is also
 * found through a pointer kept by mpcpy_module_init().
 */
#ifndef MPCPY_H
#define MPCPY_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>

#include "mpconn.h"

typedef struct {
    PyTypeObject *conn_type;     /* ConnectionBase */
    PyTypeObject *listener_type; /* ListenerHandle */
    /* Registered by _setup(): (status_name, message, errno, payload) ->
     * exception instance; ForkingPickler.dumps; pickle loads. */
    PyObject *error_factory;
    PyObject *dumps;
    PyObject *loads;
    /* mpconn.RestrictedPickleError (registered by _setup()): what a pickle
     * the restricted decoder refuses raises. */
    PyObject *restricted_error;
    /* What the connection's _try_ methods (mpconn.asyncio's hot path)
     * return instead of raising BlockingIOError: a plain object() made
     * here, which no unpickled value can be (module attribute _AGAIN). */
    PyObject *again;
    /* Bumped in a child after fork() (_after_fork_child, registered by the
     * Python layer with os.register_at_fork): busy counts copied from the
     * parent belong to threads that do not exist in the child, so an object
     * whose generation is old has no call in progress here. */
    unsigned long fork_gen;
} mpcpy_state;

typedef struct {
    PyObject_HEAD
    mpc_conn *c;
    mpcpy_state *st;   /* the module's state (its module outlives the type) */
    int busy;          /* calls of this process inside a method (the handle is held) */
    int close_pending; /* close() came while busy: the last call out closes */
    unsigned long gen; /* st->fork_gen when busy was counted */
    char readable;     /* flags as last seen (kept after close) */
    char writable;
    char restricted;   /* recv() decodes with the allow-list decoder (mpcpy_values.c) */
} mpcpy_conn;

typedef struct {
    PyObject_HEAD
    mpc_listener *l;
    mpcpy_state *st;
    int busy;          /* accept() calls of this process in progress */
    int close_pending; /* close() came while busy */
    unsigned long gen; /* st->fork_gen when busy was counted */
} mpcpy_listener;

/* ------------------------------------------------------------ mpcpy_module.c */

/* Makes the state module, the types and the functions, and adds them (and
 * STATUS_NAMES) to m, the SWIG module.  0, or -1 with an exception set. */
int mpcpy_module_init(PyObject *m);

/* The state of the module that made type t (or a base of it); NULL (no
 * exception set) if t is not one of ours. */
mpcpy_state *mpcpy_state_of_type(PyTypeObject *t);

/* Raises the exception for status st and returns NULL.  MPC_INTR with a
 * pending Python exception (raised by a signal handler in the interrupt
 * hook, e.g. KeyboardInterrupt) propagates that exception. */
PyObject *mpcpy_raise(const mpcpy_state *s, mpc_status st, const char *msg, int sys_errno,
                      PyObject *payload);
PyObject *mpcpy_raise_err(const mpcpy_state *s, const mpc_error *e);

/* The interrupt hook (mpc_options.interrupt). */
int mpcpy_interrupt(void *arg);

/* Milliseconds from a Python timeout in seconds: None -> none_value,
 * <= 0 -> 0, otherwise rounded up.  -2 on error (exception set). */
mpc_ms mpcpy_timeout_ms(PyObject *o, mpc_ms none_value);

/* Fills o from the Python-side settings.  key: None (no handshake) or a
 * bytes object (borrowed: must outlive the call that uses o). */
int mpcpy_options(mpc_options *o, PyObject *key, int dialect, PyObject *digest, mpc_ms hs_ms,
                  mpc_ms conn_ms, int backlog);

/* ------------------------------------------------------------- mpcpy_conn.c */

extern PyType_Spec mpcpy_conn_spec;

/* A new instance of cls (a subclass of s->conn_type) owning c; c is closed
 * on failure. */
PyObject *mpcpy_conn_new_from(mpcpy_state *s, PyTypeObject *cls, mpc_conn *c);

/* For the SWIG-wrapped calls (typemaps in mpconn_python.i): the live handle
 * of a ConnectionBase, else NULL with TypeError or OSError("handle is
 * closed").  _hold also takes the handle until mpcpy_conn_release(). */
mpc_conn *mpcpy_conn_arg(PyObject *o);
mpc_conn *mpcpy_conn_arg_hold(PyObject *o);
void mpcpy_conn_release(PyObject *o);
/* Raises the exception for a failed call on o's held handle; NULL. */
PyObject *mpcpy_conn_arg_fail(PyObject *o, mpc_status st);

/* --------------------------------------------------------- mpcpy_listener.c */

extern PyType_Spec mpcpy_listener_spec;

/* A new ListenerHandle owning l (closed on failure). */
PyObject *mpcpy_listener_new_from(mpcpy_state *s, mpc_listener *l);

/* The live handle of a ListenerHandle, else NULL with an exception. */
mpc_listener *mpcpy_listener_arg(PyObject *o);

/* ------------------------------------------------------------ mpcpy_values.c */

/* Restricted unpickling: decodes the pickle data[0..len) with the core's
 * allow-list decoder (mpc_value_decode_with), building the Python objects
 * directly (builtin types only; sharing and cycles as pickle.loads makes
 * them).  A refused or malformed pickle raises s->restricted_error naming
 * the opcode, the global and the offset.  Needs the GIL; data must not
 * change during the call.  A new reference, or NULL with an exception set. */
PyObject *mpcpy_restricted_loads(const mpcpy_state *s, const void *data, size_t len);

#endif
