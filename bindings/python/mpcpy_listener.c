/*
 * mpcpy_listener.c - ListenerHandle, one mpc_listener (used by
 * mpconn.Listener): accept() and close(), which need the busy/wake logic
 * (a close() from another thread wakes a waiting accept() and lets it
 * finish the close).  Its accessors (address, family, fileno, last peer)
 * are wrapped by SWIG, through mpcpy_listener_arg().
 */
#include "mpcpy.h"

#include <string.h>

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
    if (self->gen != self->st->fork_gen) {
        self->gen = self->st->fork_gen;
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
    PyTypeObject *tp = Py_TYPE(self);
    mpcpy_listener_free(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
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
    if (self->gen == self->st->fork_gen && self->busy > 0)
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
        return mpcpy_raise_err(self->st, &e);
    return mpcpy_conn_new_from(self->st, cls, c);
}

/* _setblocking(flag): a non-blocking listener's accept() raises
 * BlockingIOError when no client is waiting, and returns non-blocking
 * connections whose handshake their _flush() finishes. */
static PyObject *mpcpy_listener_setblocking(mpcpy_listener *self, PyObject *flag)
{
    int on = PyObject_IsTrue(flag);
    mpc_listener *l;
    if (on < 0 || !(l = mpcpy_listener_get(self)))
        return NULL;
    (void)mpc_listener_set_blocking(l, on);
    Py_RETURN_NONE;
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

static PyObject *mpcpy_listener_get_closed(mpcpy_listener *self, void *unused)
{
    (void)unused;
    mpcpy_listener_sync(self);
    return PyBool_FromLong(!self->l || self->close_pending);
}

static PyMethodDef mpcpy_listener_methods[] = {
    {"accept", (PyCFunction)mpcpy_listener_accept, METH_VARARGS, NULL},
    {"close", (PyCFunction)mpcpy_listener_close, METH_NOARGS, NULL},
    {"_setblocking", (PyCFunction)mpcpy_listener_setblocking, METH_O, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef mpcpy_listener_getset[] = {
    {"closed", (getter)mpcpy_listener_get_closed, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyObject *mpcpy_listener_new_from(mpcpy_state *s, mpc_listener *l)
{
    mpcpy_listener *self;
    mpc_listener_set_interrupt(l, mpcpy_interrupt, NULL);
    self = PyObject_New(mpcpy_listener, s->listener_type);
    if (!self) {
        mpc_listener_close(l);
        return NULL;
    }
    self->l = l;
    self->st = s;
    self->busy = 0;
    self->close_pending = 0;
    self->gen = s->fork_gen;
    return (PyObject *)self;
}

mpc_listener *mpcpy_listener_arg(PyObject *o)
{
    mpcpy_state *s = mpcpy_state_of_type(Py_TYPE(o));
    if (!s || !PyObject_TypeCheck(o, s->listener_type)) {
        PyErr_Format(PyExc_TypeError, "expected a ListenerHandle, not %.100s",
                     Py_TYPE(o)->tp_name);
        return NULL;
    }
    return mpcpy_listener_get((mpcpy_listener *)o);
}

#ifndef Py_TPFLAGS_IMMUTABLETYPE
#define Py_TPFLAGS_IMMUTABLETYPE 0
#endif
#ifndef Py_TPFLAGS_DISALLOW_INSTANTIATION
#define Py_TPFLAGS_DISALLOW_INSTANTIATION 0 /* (tp_new = NULL before 3.10) */
#endif

static PyType_Slot mpcpy_listener_slots[] = {
    {Py_tp_doc, (void *)"One mpc_listener (used by mpconn.Listener)."},
    {Py_tp_dealloc, (void *)mpcpy_listener_dealloc},
    {Py_tp_methods, mpcpy_listener_methods},
    {Py_tp_getset, mpcpy_listener_getset},
    {0, NULL}};

PyType_Spec mpcpy_listener_spec = {
    "mpconn._mpconn.ListenerHandle",
    sizeof(mpcpy_listener),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    mpcpy_listener_slots,
};
