/*
 * mpconn_lua.i - the Lua 5.4 binding: typemaps, one receive action that
 * avoids an allocation for small messages, and a monotonic clock.
 *
 * SWIG builds the compiled core "mpconn.core" (luaopen_mpconn_core) from the
 * shared interface ../mpconn.i and the real header.  This file converts
 * types and nothing else; the idiomatic face (objects with __gc/__close,
 * nil-message-code returns, seconds instead of milliseconds) is lua/mpconn.lua.
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
 *   - handles come back as SWIG pointers that the core never frees: the Lua
 *     layer owns them and closes each exactly once;
 *   - a handle argument may not be nil (SWIG would pass NULL).
 * Temporary arrays live in Lua userdata, so an argument error raised half-way
 * through a conversion leaks nothing.
 */
%module mpconn_core

%{
#include <stdint.h>
#include "mpconn.h"

/* A payload argument must be a Lua string; numbers are not converted. */
static int mpcl_isbytes(lua_State *L, int idx) { return lua_type(L, idx) == LUA_TSTRING; }
static int mpcl_isniltable(lua_State *L, int idx) { return lua_isnoneornil(L, idx) || lua_istable(L, idx); }

/* Scratch memory owned by the Lua stack (collected with it). */
static void *mpcl_scratch(lua_State *L, size_t n) { return lua_newuserdatauv(L, n ? n : 1, 0); }

/* Reads an optional integer field of the options table at idx. */
static int mpcl_optint(lua_State *L, int idx, const char *name, lua_Integer *out)
{
    int present;
    lua_getfield(L, idx, name);
    present = !lua_isnil(L, -1);
    if (present) {
        int isnum = 0;
        *out = lua_tointegerx(L, -1, &isnum);
        if (!isnum) return luaL_error(L, "option %s: integer expected, got %s", name, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return present;
}

/* Fills *o from the options table at idx (keys are the C field names).  The
 * strings stay referenced by the table, so the pointers stay valid for the
 * whole call. */
static void mpcl_options(lua_State *L, int idx, mpc_options *o)
{
    lua_Integer v = 0;
    mpc_options_init(o);
    lua_getfield(L, idx, "authkey");
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n = 0;
        o->authkey = lua_tolstring(L, -1, &n);
        o->authkey_len = n;
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "option authkey: string expected, got %s", luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "digest");
    if (lua_type(L, -1) == LUA_TSTRING) o->digest = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1)) luaL_error(L, "option digest: string expected, got %s", luaL_typename(L, -1));
    lua_pop(L, 1);
    if (mpcl_optint(L, idx, "backlog", &v)) o->backlog = (int)v;
    if (mpcl_optint(L, idx, "dialect", &v)) o->dialect = (mpc_dialect)v;
    if (mpcl_optint(L, idx, "handshake_timeout", &v)) o->handshake_timeout = (mpc_ms)v;
    if (mpcl_optint(L, idx, "connect_timeout", &v)) o->connect_timeout = (mpc_ms)v;
    if (mpcl_optint(L, idx, "io_timeout", &v)) o->io_timeout = (mpc_ms)v;
    if (mpcl_optint(L, idx, "max_message_size", &v)) o->max_message_size = (uint64_t)v;
    if (mpcl_optint(L, idx, "unix_mode", &v)) o->unix_mode = (unsigned)v;
}
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

/* ---- status: always the first result ------------------------------------- */
%typemap(out) mpc_status %{ lua_pushinteger(L, (lua_Integer)$1); SWIG_arg++; %}

/* ---- handles ---------------------------------------------------------------- */
/* A handle argument must be a live pointer, never nil (NULL). */
%typemap(check) mpc_conn *c, const mpc_conn *c, mpc_listener *l, const mpc_listener *l
%{ if (!$1) return luaL_error(L, "$symname: handle is nil"); %}

/* Connection handles are converted on every send and receive: compare the
 * type descriptor directly (what SWIG_ConvertPtr does after a name lookup)
 * and fall back to SWIG_ConvertPtr for anything else. */
%typemap(in, checkfn="SWIG_isptrtype") mpc_conn *c, const mpc_conn *c
%{ if (lua_type(L, $input) == LUA_TUSERDATA
         && ((swig_lua_userdata *)lua_touserdata(L, $input))->type == $descriptor) {
     $1 = ($ltype)((swig_lua_userdata *)lua_touserdata(L, $input))->ptr;
   } else if (!SWIG_IsOK(SWIG_ConvertPtr(L, $input, (void **)&$1, $descriptor, 0))) {
     SWIG_fail_ptr("$symname", $argnum, $descriptor);
   } %}

/* Out-handles: pushed (SWIG does not own them) or nil. */
%typemap(in, numinputs=0) mpc_conn **out (mpc_conn *tmp = NULL), mpc_conn **a (mpc_conn *tmp = NULL),
    mpc_conn **b (mpc_conn *tmp = NULL)
%{ $1 = &tmp; %}
%typemap(in, numinputs=0) mpc_listener **out (mpc_listener *tmp = NULL)
%{ $1 = &tmp; %}
%typemap(argout) mpc_conn **out, mpc_conn **a, mpc_conn **b, mpc_listener **out
%{ SWIG_NewPointerObj(L, *$1, $*1_descriptor, 0); SWIG_arg++; %}

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

/* A batch for mpc_send_many: a Lua sequence of strings. */
%typemap(in, checkfn="lua_istable") (const mpc_buf *bufs, size_t n)
%{ {
    size_t i_, n_ = (size_t)lua_rawlen(L, $input);
    mpc_buf *v_ = (mpc_buf *)mpcl_scratch(L, n_ * sizeof(mpc_buf));
    for (i_ = 0; i_ < n_; i_++) {
        size_t len_ = 0;
        lua_rawgeti(L, $input, (lua_Integer)i_ + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "send_many: message %d is a %s, string expected", (int)i_ + 1,
                              luaL_typename(L, -1));
        /* Still referenced by the table after the pop. */
        v_[i_].data = lua_tolstring(L, -1, &len_);
        v_[i_].len = len_;
        lua_pop(L, 1);
    }
    $1 = v_; $2 = n_;
} %}

/* ---- payloads out ----------------------------------------------------------- */
/* mpc_recv_bytes: the library's buffer becomes a Lua string and is released
 * at once.  Lua 5.4 has no way to build a string in place (luaL_Buffer copies
 * too in luaL_pushresult), so this single copy is the floor. */
%typemap(in, numinputs=0) (void **out, size_t *len) (void *p_ = NULL, size_t n_ = 0)
%{ $1 = &p_; $2 = &n_; %}
%typemap(argout) (void **out, size_t *len)
%{ if (*$1) { lua_pushlstring(L, (const char *)*$1, *$2); mpc_free(*$1); } else lua_pushnil(L);
   SWIG_arg++; %}
/* Small messages skip the library's allocation: the header is read first
 * (mpc_recv_begin) and a payload that fits a stack buffer is read into it
 * and pushed from there; larger ones go through mpc_recv_bytes, which
 * returns the message already pending. */
%feature("action") mpc_recv_bytes %{
  {
    uint64_t declared_ = 0;
    result = mpc_recv_begin(arg1, arg2, &declared_);
    if (result == MPC_OK && declared_ <= 1024) {
      char small_[1024];
      result = mpc_recv_payload(arg1, small_, (size_t)declared_);
      if (result == MPC_OK) {
        lua_pushinteger(L, 0);
        lua_pushlstring(L, small_, (size_t)declared_);
        return 2;
      }
    } else if (result == MPC_OK) {
      result = mpc_recv_bytes(arg1, arg2, arg3, arg4);
    }
  }
%}

/* mpc_poll: ready as a boolean. */
%typemap(in, numinputs=0) int *ready (int r_ = 0) %{ $1 = &r_; %}
%typemap(argout) int *ready %{ lua_pushboolean(L, *$1); SWIG_arg++; %}

/* mpc_wait: a sequence of connection handles in, the 1-based indices of the
 * ready ones out (a sequence, possibly empty). */
%typemap(in, checkfn="lua_istable") (mpc_conn *const *conns, size_t n)
%{ {
    size_t i_, n_ = (size_t)lua_rawlen(L, $input);
    mpc_conn **v_ = (mpc_conn **)mpcl_scratch(L, n_ * sizeof(mpc_conn *));
    for (i_ = 0; i_ < n_; i_++) {
        void *p_ = NULL;
        lua_rawgeti(L, $input, (lua_Integer)i_ + 1);
        if (!SWIG_IsOK(SWIG_ConvertPtr(L, -1, &p_, SWIGTYPE_p_mpc_conn, 0)) || !p_)
            return luaL_error(L, "wait: entry %d is not a connection handle", (int)i_ + 1);
        v_[i_] = (mpc_conn *)p_;
        lua_pop(L, 1);
    }
    $1 = v_; $2 = n_;
} %}
%typemap(in, numinputs=0) (int *ready, size_t *nready) (size_t nr_ = 0)
%{ $1 = NULL; $2 = &nr_; %}
/* Sized once the sequence is known (check typemaps follow every in typemap;
 * arg2 is n). */
%typemap(check) (int *ready, size_t *nready)
%{ $1 = (int *)mpcl_scratch(L, arg2 * sizeof(int)); %}
%typemap(argout) (int *ready, size_t *nready)
%{ {
    size_t i_; lua_Integer k_ = 0;
    lua_createtable(L, (int)*$2, 0);
    if (result == MPC_OK)
        for (i_ = 0; i_ < arg2; i_++)
            if ($1[i_]) { lua_pushinteger(L, (lua_Integer)i_ + 1); lua_rawseti(L, -2, ++k_); }
    SWIG_arg++;
} %}

/* Sans-I/O helpers: fixed-size output buffers become strings. */
%typemap(in, numinputs=0) unsigned char out[ANY] (unsigned char h_[MPC_FRAME_HEADER_MAX])
%{ $1 = h_; %}
%typemap(argout) unsigned char out[ANY]
%{ lua_pushlstring(L, (const char *)$1, (size_t)result); SWIG_arg++; %}

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

/* ---- what Lua does not get, and why ----------------------------------------- */
/* Structs are built from option tables by the typemaps above. */
%ignore mpc_options;
%ignore mpc_options_init;
%ignore mpc_error;
%ignore mpc_buf;
/* Lua strings are immutable: there is no caller buffer to receive into, and
 * a string cannot be filled in place, so the two-step receive gains nothing
 * over mpc_recv_bytes (see the typemap above). */
%ignore mpc_recv_bytes_into;
%ignore mpc_recv_begin;
%ignore mpc_recv_payload;
%ignore mpc_recv_alloc_step;
/* C function pointers cannot be built from Lua. */
%ignore mpc_conn_set_interrupt;
%ignore mpc_listener_set_interrupt;
/* Values (the pickle subset) get Lua typemaps of their own with the values
 * work; until then the raw tree API is not exposed to Lua. */
%rename("$ignore", regextarget=1, fullname=1) "^mpc_value";
%rename("$ignore", regextarget=1, fullname=1) "^mpc_vkind";
%rename("$ignore", regextarget=1, fullname=1) "^MPC_V_";
%rename("$ignore", regextarget=1, fullname=1) "^MPC_VALUE_DEPTH";
%rename("$ignore", regextarget=1, fullname=1) "^mpc_decode_options";
%rename("$ignore", regextarget=1, fullname=1) "^mpc_py2str";
%rename("$ignore", regextarget=1, fullname=1) "^MPC_PY2STR";
/* SIZE_MAX has no exact Lua integer; a negative maxlength means "no limit". */
%ignore MPC_NO_LIMIT;

/* mpconn.monotonic(): seconds (a float) on CLOCK_MONOTONIC, for deadlines
 * and benchmarks in scripts (Lua's os.time has one-second steps and
 * os.clock counts CPU time).  Not part of the C API, hence native here. */
%{
#include <time.h>
static int mpcl_monotonic(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}
%}
%native(monotonic) int mpcl_monotonic(lua_State *L);

/* maxlength: a negative value means "no limit" (MPC_NO_LIMIT). */
%typemap(in, checkfn="lua_isnumber") size_t maxlength
%{ { lua_Integer v_ = luaL_checkinteger(L, $input); $1 = v_ < 0 ? MPC_NO_LIMIT : (size_t)v_; } %}

/* No globals: SWIG's Lua runtime always defines the helper globals swig_type
 * and swig_equals; take back the ones this module just set. */
%init %{
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
