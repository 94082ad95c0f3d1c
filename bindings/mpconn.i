/*
 * mpconn.i - the interface shared by every language binding.
 *
 * SWIG reads the real public header; this file only says what is wrapped
 * as is, what is hidden (with the reason) and who owns what.  Each
 * language's own .i (bindings/python/, bindings/lua/) sets %module, holds
 * its typemaps and then includes this file.  Idioms (classes, exceptions,
 * nil-message returns) live in python/mpconn/ and lua/, not here.
 */
%{
#include "mpconn.h"
%}

%include <stdint.i>

/* Opaque handles: the languages see proxies, never struct fields. */
%nodefaultctor mpc_listener;
%nodefaultdtor mpc_listener;
%nodefaultctor mpc_conn;
%nodefaultdtor mpc_conn;

/* The X-macro helpers are internal to the header. */
%ignore MPC__STATUS_COUNT;

/* The sans-I/O header decoder is a C-level building block; the bindings
 * use the transport.  (Its struct fields are private.) */
%ignore mpc_frame_decoder;
%ignore mpc_frame_feed;

/* Memory handed to callers is converted by per-language typemaps and
 * released there; the raw call is not useful to scripts. */
%ignore mpc_free;

/* A borrowed view into the library's read buffer: the hand-written receive
 * paths use it in C; a script could outlive the view. */
%ignore mpc_recv_peek;
%ignore mpc_recv_consume;

/* Destructors: each language's layer calls these exactly once and then
 * drops its pointer, so a closed handle fails with "closed" instead of
 * touching freed memory. */
%delobject mpc_listener_close;
%delobject mpc_conn_close;
%delobject mpc_conn_detach;
