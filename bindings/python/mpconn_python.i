/*
 * mpconn_python.i - the Python binding's interface: the real header, the
 * typemaps, what is ignored (with the reason) and what SWIG wraps with the
 * GIL released or not; the hand-written part is registered by one call.
 *
 * SWIG generates mpconn/core.py and the extension mpconn/_mpconn*.so (the
 * module is "core", not "_core": SWIG names the low-level module after it
 * with one more leading underscore, and "__core" would be name-mangled
 * inside proxy classes).
 *
 * What SWIG wraps (each named in a %thread or %nothread line below, which
 * .ci/check_python_api.py checks): the status table, the version, the
 * sans-I/O framing header and handshake (used by
 * mpconn.deliver_challenge()/answer_challenge() on foreign connection
 * objects), and the cold calls on a handle (a listener's address, family,
 * descriptor and last peer; a connection's peer, timeout, read-ahead switch
 * and last error), which take the hand-written objects through the
 * typemaps below.
 *
 * The hand-written part (bindings/python/mpcpy_*.c, private header
 * mpcpy.h): the types ConnectionBase and ListenerHandle, heap types with
 * per-module state, which own an mpc_conn / mpc_listener and implement the
 * hot path (send_bytes, recv_bytes, recv_bytes_into, poll, send, recv,
 * send_bytes_many) and the calls that need the busy/hold/wake logic
 * (accept, close, the handshake legs), and the functions that make handles
 * (listen, connect, pipe).  No protocol logic lives there: statuses are
 * turned into exceptions by ONE table in python/mpconn/_errors.py
 * (registered with _setup()), checked against STATUS_NAMES (made from the
 * core's status X-macro) at import.
 */
%module(package="mpconn", moduleimport="from . import _mpconn as $module", threads="1") core

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
#include "mpcpy.h"
%}

/* The GIL: kept by default (every wrapped call below is quick), released
 * only for the calls marked %thread. */
%nothread;

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

/* Handles: the hand-written objects, checked and unwrapped (a closed one
 * raises OSError, as the methods do). */
%typemap(in) const mpc_listener *l {
    if (!($1 = mpcpy_listener_arg($input)))
        SWIG_fail;
}
%typemap(in) mpc_conn *c, const mpc_conn *c {
    if (!($1 = mpcpy_conn_arg($input)))
        SWIG_fail;
}
/* Socket paths in the file system's encoding, as CPython's Listener. */
%typemap(out) const char *mpc_listener_address {
    $result = PyUnicode_DecodeFSDefault($1);
}

/* mpc_status is an int to Python; _errors.py turns it into an exception. */

/* ------------------------------------------------------------------------
 * Wrapped by SWIG.  %thread: the GIL is released around the call.
 * ------------------------------------------------------------------------ */
%nothread mpc_version;
%nothread mpc_strerror;
%nothread mpc_status_name;
%nothread mpc_frame_header;
%thread mpc_random;          /* reads the kernel's random source */
%nothread mpc_hs_challenge;
%nothread mpc_hs_respond;
%nothread mpc_hs_verify;
%nothread mpc_hs_check_welcome;
%nothread mpc_listener_address;
%nothread mpc_listener_family;
%nothread mpc_listener_fileno;
%nothread mpc_listener_last_peer;
%nothread mpc_conn_peer;
%nothread mpc_conn_set_timeout;
%nothread mpc_conn_set_read_ahead;
%nothread mpc_conn_status;
%nothread mpc_conn_errmsg;
%nothread mpc_conn_errno;

/* ------------------------------------------------------------------------
 * Not wrapped.
 * ------------------------------------------------------------------------ */

/* Built by the hand-written listen()/connect()/pipe() from their
 * arguments; Python never sees them. */
%ignore mpc_options;
%ignore mpc_tls_options;
%ignore mpc_options_init;
%ignore mpc_error;
%ignore mpc_buf;
%ignore mpc_alloc_fn;

/* Hand-written (mpcpy_module.c): they make the hand-written objects (with
 * the interrupt hook set, the GIL released while they block). */
%ignore mpc_listen;             /* listen() takes the address as bytes: mpc_listen_n */
%ignore mpc_listen_n;           /* listen() */
%ignore mpc_connect;            /* connect() takes the address as bytes: mpc_connect_n */
%ignore mpc_connect_n;          /* connect() */
%ignore mpc_pipe;               /* pipe() */
%ignore mpc_conn_from_fd;       /* ConnectionBase.__init__(handle, readable, writable) */

/* Hand-written (mpcpy_listener.c): accept() and close() need the busy/wake
 * logic; the hook is set when the handle is made. */
%ignore mpc_listener_accept;       /* ListenerHandle.accept() */
%ignore mpc_listener_close;        /* ListenerHandle.close() */
%ignore mpc_listener_wake;         /* used by ListenerHandle.close() */
%ignore mpc_listener_set_interrupt; /* set to the Python signal check on creation */
%ignore mpc_listener_errmsg;       /* creation calls report through mpc_error */

/* Hand-written (mpcpy_conn.c): the hot path and what holds the handle. */
%ignore mpc_conn_deliver_challenge; /* ConnectionBase._handshake(): holds the handle */
%ignore mpc_conn_answer_challenge;  /* ConnectionBase._handshake(): holds the handle */
%ignore mpc_send_bytes;        /* ConnectionBase.send_bytes() and send(): zero-copy, GIL */
%ignore mpc_send_many;         /* ConnectionBase.send_bytes_many() */
%ignore mpc_recv_bytes;        /* ConnectionBase.recv_bytes() uses mpc_recv_with */
%ignore mpc_recv_with;         /* ConnectionBase.recv_bytes()/recv(): into a bytes object */
%ignore mpc_recv_bytes_into;   /* ConnectionBase.recv_bytes_into(): the caller's buffer */
%ignore mpc_poll;              /* ConnectionBase.poll() */
%ignore mpc_wait;              /* mpconn.wait() selects on the descriptors, as CPython */
%ignore mpc_conn_fileno;       /* ConnectionBase.fileno() */
%ignore mpc_conn_readable;     /* ConnectionBase.readable (kept after close) */
%ignore mpc_conn_writable;     /* ConnectionBase.writable (kept after close) */
%ignore mpc_conn_buffered;     /* ConnectionBase._buffered() (0 once closed) */
%ignore mpc_conn_read_ahead;   /* ConnectionBase.read_ahead (False once closed) */
%ignore mpc_conn_set_interrupt; /* set to the Python signal check on creation */
%ignore mpc_conn_set_wakeable; /* set by every receive: wakeable when other threads run */
%ignore mpc_conn_wake;         /* used by ConnectionBase.close() while a call waits */
%ignore mpc_conn_detach;       /* ConnectionBase._detach() / _handle = None */
%ignore mpc_conn_close;        /* ConnectionBase.close(): waits for the calls inside */
%ignore mpc_conn_shutdown;     /* close() never shuts the socket down (other processes share it) */
%ignore mpc_conn_set_blocking; /* ConnectionBase._setblocking(): holds the handle */
%ignore mpc_conn_blocking;     /* mpconn.asyncio keeps the mode itself */
%ignore mpc_conn_wants;        /* ConnectionBase._wants() */
%ignore mpc_conn_pending;      /* ConnectionBase._pending() */
%ignore mpc_flush;             /* ConnectionBase._flush(): holds the handle */
%ignore mpc_listener_set_blocking; /* ListenerHandle._setblocking() */

/* Binding plumbing (provisional in the header): the hand-written receive
 * uses mpc_recv_with() instead. */
%ignore mpc_recv_begin;        /* plumbing: mpc_recv_with() is the one receive loop */
%ignore mpc_recv_payload;      /* plumbing: mpc_recv_with() is the one receive loop */
%ignore mpc_recv_alloc_step;   /* plumbing: mpc_recv_with() applies the policy */
%ignore mpc_recv_abandon;      /* plumbing: mpc_recv_with() abandons on failure */

/* The value codec (section 4 of the header) is not wrapped: Python pickles
 * with its own pickle module, as CPython does, and recv(restricted=True)
 * calls mpc_value_decode() from hand-written C (mpcpy_values.c), which
 * builds Python objects from the tree directly. */
%rename("$ignore", regextarget=1) "^mpc_(value|vkind|py2str|decode|encode)";
%ignore mpc_send_value;  /* value codec: Python sends pickles from its own pickle module */
%ignore mpc_recv_value;  /* value codec: recv(restricted=True) is mpcpy_values.c on recv's message */
%rename("$ignore", regextarget=1) "^MPC_(V_|VALUE_DEPTH|PY2)";

%include "../mpconn.i"
%include "mpconn.h"

/* The hand-written types and functions (mpcpy_module.c). */
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
_restricted_loads = _core._restricted_loads
_after_fork_child = _core._after_fork_child
STATUS_NAMES = _core.STATUS_NAMES
_AGAIN = _core._AGAIN
%}
