/*
 * mpconn_lua.i - the Lua 5.4 binding's interface: typemaps, what is not
 * wrapped and why, and the hand-written functions it registers (%native).
 *
 * SWIG builds the compiled core "mpconn.core" (luaopen_mpconn_core) from the
 * shared interface ../mpconn.i and the real header.  The hand-written C is
 * in the files beside this one (mpcl.h says which does what): the module's
 * own handles, the per-message methods, the value conversions.  The
 * idiomatic face (objects with __gc/__close, nil-message-code returns,
 * seconds instead of milliseconds) is lua/mpconn.lua.
 *
 * Shape of the raw core that every typemap below keeps:
 *   - a call that returns mpc_status returns the status as its first Lua
 *     value (an integer, 0 = MPC_OK), then its outputs in argument order;
 *     an output that was not produced is nil;
 *   - creation calls end with the mpc_error message ("" on success);
 *   - payloads are Lua strings both ways, passed by pointer and length
 *     (lua_tolstring / lua_pushlstring), so embedded zeros and all 256 byte
 *     values survive; a payload argument must be a real string, not a number;
 *   - integers are Lua integers (SWIG's stock Lua typemaps push floats);
 *   - handles are the module's own userdata (mpcl.h, "handles"), not SWIG
 *     pointers; a handle owns its object (its __gc closes it), and the Lua
 *     layer closes each once with core.conn_close / core.listener_close;
 *   - a handle argument that is nil or closed raises "... is closed".
 * Temporary arrays live in Lua userdata, so an argument error raised half-way
 * through a conversion leaks nothing.
 */
%module mpconn_core

%{
#include "mpcl.h"
%}

/* ---- integers stay integers --------------------------------------------- */
%typemap(in, checkfn="lua_isnumber") int, long, long long, int64_t, mpc_ms, enum SWIGTYPE
%{ $1 = ($ltype)luaL_checkinteger(L, $input); %}
%typemap(in, checkfn="lua_isnumber") unsigned int, unsigned long, unsigned long long, size_t, uint64_t
%{ { lua_Integer v_ = luaL_checkinteger(L, $input);
     if (v_ < 0) return luaL_argerror(L, $input, "must not be negative");
     $1 = ($ltype)v_; } %}
%typemap(out) int, unsigned int, long, unsigned long, long long, unsigned long long,
    int64_t, uint64_t, size_t, mpc_ms, enum SWIGTYPE
%{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}
/* maxlength: a negative value means "no limit" (MPC_NO_LIMIT). */
%typemap(in, checkfn="lua_isnumber") size_t maxlength
%{ { lua_Integer v_ = luaL_checkinteger(L, $input); $1 = v_ < 0 ? MPC_NO_LIMIT : (size_t)v_; } %}

/* ---- status: always the first result ------------------------------------- */
%typemap(out) mpc_status %{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}

/* ---- handles ------------------------------------------------------------------
 * Converted on entry, then read again in the check typemap, which SWIG runs
 * after every argument is converted: a conversion that allocates (a batch,
 * options) may run a finalizer that closes the handle (mpcl.h,
 * "Finalizers").  ($argnum is the stack index: a handle is always the first
 * parameter.) */
%typemap(in) mpc_conn *c, const mpc_conn *c %{ $1 = ($ltype)mpcl_check_conn(L, $input, "$symname"); %}
%typemap(check) mpc_conn *c, const mpc_conn *c
%{ if (!($1 = ($ltype)mpcl_check_conn(L, $argnum, "$symname"))) return luaL_error(L, "$symname: connection is closed"); %}
%typemap(in) mpc_listener *l, const mpc_listener *l %{ $1 = ($ltype)mpcl_check_listener(L, $input, "$symname"); %}
%typemap(check) mpc_listener *l, const mpc_listener *l
%{ if (!($1 = ($ltype)mpcl_check_listener(L, $argnum, "$symname"))) return luaL_error(L, "$symname: listener is closed"); %}

/* Out-handles: a new handle owning the object, or nil (mpcl_push_conn
 * closes the object if the handle cannot be made). */
%typemap(in, numinputs=0) mpc_conn **out (mpc_conn *tmp = NULL), mpc_conn **a (mpc_conn *tmp = NULL),
    mpc_conn **b (mpc_conn *tmp = NULL), mpc_listener **out (mpc_listener *tmp = NULL)
%{ $1 = &tmp; %}
%typemap(argout) mpc_conn **out, mpc_conn **a, mpc_conn **b %{ mpcl_push_conn(L, *$1); SWIG_arg++; %}
%typemap(argout) mpc_listener **out %{ mpcl_push_listener(L, *$1); SWIG_arg++; %}

/* The detailed error report of creation calls: its message string. */
%typemap(in, numinputs=0) mpc_error *err (mpc_error tmp)
%{ tmp.status = MPC_OK; tmp.sys_errno = 0; tmp.message[0] = '\0'; $1 = &tmp; %}
%typemap(argout) mpc_error *err %{ lua_pushstring(L, $1->message); SWIG_arg++; %}

/* ---- options: nil, or a table keyed by the C field names ------------------- */
%typemap(in, checkfn="mpcl_isniltable") const mpc_options *opts (mpc_options tmp)
%{ if (lua_isnoneornil(L, $input)) $1 = NULL; else { mpcl_options(L, $input, &tmp); $1 = &tmp; } %}

/* ---- payloads in: (pointer, length) from one Lua string -------------------- */
%typemap(in, checkfn="mpcl_isbytes") (const void *BYTES, size_t LEN)
%{ { size_t n_ = 0; $1 = ($1_ltype)lua_tolstring(L, $input, &n_); $2 = n_; } %}
%apply (const void *BYTES, size_t LEN) {
    (const void *buf, size_t len), (const void *key, size_t key_len),
    (const void *random, size_t rand_len), (const void *challenge, size_t challenge_len),
    (const void *reply, size_t reply_len), (const void *msg, size_t len) };

/* A batch for mpc_send_many: a Lua sequence of strings (kept referenced by
 * the table for the call). */
%typemap(in, checkfn="lua_istable") (const mpc_buf *bufs, size_t n)
%{ { size_t i_, n_ = (size_t)lua_rawlen(L, $input);
     mpc_buf *v_ = (mpc_buf *)mpcl_scratch(L, n_ * sizeof(mpc_buf));
     if ((size_t)lua_rawlen(L, $input) != n_) return luaL_error(L, "send_many: the list changed during the call");
     for (i_ = 0; i_ < n_; i_++) {
       if (lua_rawgeti(L, $input, (lua_Integer)i_ + 1) != LUA_TSTRING)
         return luaL_error(L, "send_many: message %d is a %s, string expected", (int)i_ + 1, luaL_typename(L, -1));
       v_[i_].data = lua_tolstring(L, -1, &v_[i_].len);
       lua_pop(L, 1);
     }
     $1 = v_; $2 = n_; } %}

/* ---- payloads out ----------------------------------------------------------- */
/* The library's buffer becomes a Lua string and is released at once. */
%typemap(in, numinputs=0) (void **out, size_t *len) (void *p_ = NULL, size_t n_ = 0) %{ $1 = &p_; $2 = &n_; %}
%typemap(argout) (void **out, size_t *len)
%{ if (*$1) { lua_pushlstring(L, (const char *)*$1, *$2); mpc_free(*$1); } else lua_pushnil(L); SWIG_arg++; %}

/* mpc_poll: ready as a boolean. */
%typemap(in, numinputs=0) int *ready (int r_ = 0) %{ $1 = &r_; %}
%typemap(argout) int *ready %{ lua_pushboolean(L, *$1); SWIG_arg++; %}

/* Sans-I/O helpers: fixed-size output buffers become strings. */
%typemap(in, numinputs=0) unsigned char out[ANY] (unsigned char h_[MPC_FRAME_HEADER_MAX]) %{ $1 = h_; %}
%typemap(argout) unsigned char out[ANY] %{ lua_pushlstring(L, (const char *)$1, (size_t)result); SWIG_arg++; %}
%typemap(in, numinputs=0) (unsigned char *out, size_t cap, size_t *out_len)
    (unsigned char b_[2 * MPC_HS_FRAME_MAX], size_t n_ = 0)
%{ $1 = b_; $2 = sizeof b_; $3 = &n_; %}
%typemap(argout) (unsigned char *out, size_t cap, size_t *out_len)
%{ if (result == MPC_OK) lua_pushlstring(L, (const char *)$1, *$3); else lua_pushnil(L); SWIG_arg++; %}

/* mpc_random(n): a string of n random bytes (nil on failure). */
%typemap(in, checkfn="lua_isnumber") (void *buf, size_t len)
%{ { lua_Integer v_ = luaL_checkinteger(L, $input);
     if (v_ < 0 || v_ > 65536) return luaL_argerror(L, $input, "must be 0..65536");
     $1 = mpcl_scratch(L, (size_t)v_); $2 = (size_t)v_; } %}
%typemap(argout) (void *buf, size_t len)
%{ if (result == MPC_OK) lua_pushlstring(L, (const char *)$1, $2); else lua_pushnil(L); SWIG_arg++; %}

/* ---- what Lua does not get, and why (more in ../mpconn.i) ------------------- */
/* Structs are built from option tables by the typemaps above. */
%ignore mpc_options;
%ignore mpc_tls_options;
%ignore mpc_options_init;
%ignore mpc_error;
%ignore mpc_buf;
/* Lua strings are immutable: there is no caller buffer to receive into, and
 * a string cannot be filled in place.  conn:recv_bytes (mpcl_conn.c) uses
 * these calls with buffers of its own. */
%ignore mpc_recv_bytes_into;
%ignore mpc_recv_begin;
%ignore mpc_recv_payload;
%ignore mpc_recv_alloc_step;
/* C function pointers cannot be built from Lua (mpc_recv_with's allocator:
 * a Lua string cannot be filled in place either, see above). */
%ignore mpc_conn_set_interrupt;
%ignore mpc_listener_set_interrupt;
%ignore mpc_recv_with;
/* Closing must clear the handle before the object is freed: core.conn_close,
 * core.conn_detach and core.listener_close (mpcl_module.c) do. */
%ignore mpc_conn_close;
%ignore mpc_conn_detach;
%ignore mpc_listener_close;
/* core.wait (mpcl_module.c) allocates everything before it reads the first
 * handle, an order a SWIG wrapper cannot keep for an array of handles. */
%ignore mpc_wait;
/* Values (the pickle subset): conn:send/conn:recv and mpconn.encode/decode/
 * repr convert Lua values to and from mpc_value trees in C (mpcl_values.c);
 * a script never holds a tree. */
%ignore mpc_send_value;
%ignore mpc_recv_value;
%rename("$ignore", regextarget=1, fullname=1) "^mpc_value";
%rename("$ignore", regextarget=1, fullname=1) "^mpc_vkind";
%rename("$ignore", regextarget=1, fullname=1) "^MPC_V_";
%rename("$ignore", regextarget=1, fullname=1) "^MPC_VALUE_DEPTH";
%rename("$ignore", regextarget=1, fullname=1) "^mpc_decode_options";
%rename("$ignore", regextarget=1, fullname=1) "^mpc_py2str";
%rename("$ignore", regextarget=1, fullname=1) "^MPC_PY2STR";
/* The non-blocking mode is wrapped (mpc_conn_set_blocking, mpc_conn_blocking,
 * mpc_conn_wants, mpc_conn_pending, mpc_flush, mpc_listener_set_blocking,
 * MPC_WANT_READ/WRITE): lua/mpconn.lua builds set_timeout(0), the
 * wantread/wantwrite returns and the cqueues pollable methods on them.
 * The C initializer macro has no Lua meaning: options come from tables
 * (mpcl_options fills the struct, size included). */
%ignore MPC_OPTIONS_INIT;
/* SIZE_MAX has no exact Lua integer; a negative maxlength means "no limit". */
%ignore MPC_NO_LIMIT;

/* ---- hand-written functions (mpcl.h) ------------------------------------------ */
%native(monotonic) int mpcl_monotonic(lua_State *L);
%native(conn_methods) int mpcl_conn_methods(lua_State *L);
%native(conn_close) int mpcl_conn_close(lua_State *L);
%native(conn_detach) int mpcl_conn_detach(lua_State *L);
%native(listener_close) int mpcl_listener_close(lua_State *L);
%native(wait) int mpcl_wait(lua_State *L);
%native(value_setup) int mpcl_value_setup(lua_State *L);

/* The handle metatables; then no globals: SWIG's Lua runtime always defines
 * the helper globals swig_type and swig_equals, so take back the ones this
 * module just set. */
%init %{
  mpcl_setup(L);
  {
    static const char *const mpcl_swig_globals[] = {"swig_type", "swig_equals"};
    static const lua_CFunction mpcl_swig_fns[] = {SWIG_Lua_type, SWIG_Lua_class_equal};
    int g_;
    for (g_ = 0; g_ < 2; g_++) {
      lua_getglobal(L, mpcl_swig_globals[g_]);
      if (lua_tocfunction(L, -1) == mpcl_swig_fns[g_]) {
        lua_pushnil(L);
        lua_setglobal(L, mpcl_swig_globals[g_]);
      }
      lua_pop(L, 1);
    }
  }
%}

%include "../mpconn.i"
%include "mpconn.h"
