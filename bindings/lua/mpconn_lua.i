/*
 * mpconn_lua.i - the Lua 5.4 binding: typemaps, the three per-message
 * methods as hand-written C functions (send_bytes, send_many, recv_bytes;
 * see "the hot methods"), and a monotonic clock.
 *
 * SWIG builds the compiled core "mpconn.core" (luaopen_mpconn_core) from the
 * shared interface ../mpconn.i and the real header.  Apart from the hot
 * methods this file converts types and nothing else; the idiomatic face
 * (objects with __gc/__close, nil-message-code returns, seconds instead of
 * milliseconds) is lua/mpconn.lua.
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
/* mpc_recv_bytes (the raw core.mpc_recv_bytes; conn:recv_bytes is the C
 * method further down): the library's buffer becomes a Lua string and is
 * released at once.  Lua 5.4 has no way to build a string in place
 * (luaL_Buffer copies too in luaL_pushresult), so one copy is the floor. */
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
 * a string cannot be filled in place.  The C method conn:recv_bytes uses
 * these calls with buffers of its own (see "the hot methods" below). */
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

/* ---- the hot methods, as C functions ------------------------------------------
 * conn:send_bytes(s), conn:send_many(list) and conn:recv_bytes([maxlength])
 * run once per message, so lua/mpconn.lua installs C closures for them
 * (core.conn_methods) instead of Lua functions over the SWIG wrappers: one C
 * call per message instead of a Lua call, a SWIG argument check and a
 * status/value pair.  Each closure checks the common case only (self a
 * connection table with a live handle, plain arguments) and has Lua check
 * everything else, and failures go through Lua too, so messages and error
 * levels stay those of lua/mpconn.lua; every read and write is done here:
 *   self[1]    the connection's SWIG handle (nil once closed)
 *   upvalue 1  prep: the Lua argument check for every case the closure
 *              does not take (see mpcl_prep)
 *   upvalue 2  fail(h, status): the Lua failure convention (nil, message,
 *              code, or a raised error for misuse)
 *   upvalue 3  recv_bytes only: the staging buffer (mpcl_stage userdata).
 *
 * Receiving: Lua 5.4 can only make a string by copying bytes into it
 * (lua_pushlstring; luaL_Buffer copies its box the same way), so a message
 * is read into memory of our own and copied once into its string.  Up to
 * MPCL_SMALL bytes that memory is on the C stack.  Longer messages, up to
 * MPCL_STAGE_MAX, go to one staging buffer per Lua state, kept between
 * calls: the library's fresh buffer per message was page-faulted in again
 * and again (1 MiB ping-pong: ~40 faults per round trip, 6 with the staging
 * buffer).  One buffer per Lua state is enough: it holds a message only
 * inside one recv_bytes call (no Lua code runs between the read and the
 * copy), so connections and coroutines share it.  It starts at page offset
 * MPCL_STAGE_OFFSET (SPEC 6: buffers at page offset 0 or 16 make copies slow
 * through 4K aliasing), grows to the longest message it took and stays until
 * the module is collected: at most MPCL_STAGE_MAX plus 6 KiB.  Longer
 * messages are read into the library's own buffer (mpc_recv_bytes), where
 * measurements showed no gain from staging (the copy into the string
 * dominates) and memory would stay pinned. */
%{
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#define MPCL_SMALL 1024
#define MPCL_STAGE_OFFSET 2112 /* the core's read buffer uses the same page offset */
#define MPCL_STAGE_MAX ((size_t)4 << 20)

typedef struct mpcl_stage {
    unsigned char *block; /* what malloc returned (NULL: no buffer) */
    unsigned char *buf;   /* block, aligned up to a page, + MPCL_STAGE_OFFSET */
    size_t cap;           /* usable bytes at buf */
} mpcl_stage;

static int mpcl_stage_gc(lua_State *L)
{
    mpcl_stage *s = (mpcl_stage *)lua_touserdata(L, 1);
    free(s->block);
    s->block = s->buf = NULL;
    s->cap = 0;
    return 0;
}

/* Makes room for need bytes (the contents are not kept).  -1 if out of
 * memory (the old buffer stays). */
static int mpcl_stage_reserve(mpcl_stage *s, size_t need)
{
    const size_t extra = 4096 + MPCL_STAGE_OFFSET, step = (size_t)64 * 1024;
    unsigned char *block, *buf;
    if (need <= s->cap) return 0;
    if (need > SIZE_MAX - extra - step) return -1;
    need = (need + step - 1) / step * step; /* sizes that creep up do not reallocate each time */
    block = (unsigned char *)malloc(need + extra);
    if (!block) return -1;
    buf = (unsigned char *)(((uintptr_t)block + 4095) & ~(uintptr_t)4095) + MPCL_STAGE_OFFSET;
    free(s->block);
    s->block = block;
    s->buf = buf;
    s->cap = need;
    return 0;
}

/* The handle of the connection table at index 1, pushed (its stack index is
 * *hidx), or NULL if self is not a table holding a live connection handle. */
static mpc_conn *mpcl_self(lua_State *L, int *hidx)
{
    swig_lua_userdata *u;
    if (lua_type(L, 1) != LUA_TTABLE) return NULL;
    if (lua_rawgeti(L, 1, 1) != LUA_TUSERDATA || lua_rawlen(L, -1) < sizeof(swig_lua_userdata)) return NULL;
    u = (swig_lua_userdata *)lua_touserdata(L, -1);
    if (u->type != SWIGTYPE_p_mpc_conn || !u->ptr) return NULL;
    *hidx = lua_gettop(L);
    return (mpc_conn *)u->ptr;
}

/* Every case the fast path does not take: prep(...) with the caller's nargs
 * arguments checks them as lua/mpconn.lua documents (raising on misuse or a
 * closed connection) and returns the normalised argument 2: the string to
 * send (after string.sub positions), the list, or maxlength (-1: none).  The
 * stack becomes self, that value; the handle is returned as by mpcl_self. */
static mpc_conn *mpcl_prep(lua_State *L, int nargs, int *hidx)
{
    int i;
    mpc_conn *c;
    lua_settop(L, nargs);
    lua_pushvalue(L, lua_upvalueindex(1));
    for (i = 1; i <= nargs; i++) lua_pushvalue(L, i);
    lua_call(L, nargs, 1); /* raises for nargs == 0: self is nil */
    lua_replace(L, 2);
    lua_settop(L, 2);
    if (!(c = mpcl_self(L, hidx))) luaL_error(L, "mpconn: prep accepted a connection without a handle");
    return c;
}

/* fail(h, st)'s results: nil, message, code (or it raises). */
static int mpcl_fail(lua_State *L, int hidx, mpc_status st)
{
    int base = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, hidx);
    lua_pushinteger(L, (lua_Integer)st);
    lua_call(L, 2, LUA_MULTRET);
    return lua_gettop(L) - base;
}

/* A write to a one-way pipe whose reader is gone raises SIGPIPE, which kills
 * a stand-alone lua5.4.  For pipe writers (mpconn.pipe(false)) the send runs
 * with SIGPIPE blocked in the calling thread; a SIGPIPE that this write
 * raised (the send failed with EPIPE) is taken off the pending set, so the
 * caller gets nil, message, "OS" as from a socket.  Signal dispositions are
 * never changed, and a thread that already blocks SIGPIPE keeps its own
 * handling (its pending signals are not touched). */
typedef struct mpcl_sigpipe { sigset_t set, old; int guarded; } mpcl_sigpipe;

static void mpcl_sigpipe_block(mpcl_sigpipe *g)
{
    sigemptyset(&g->set);
    sigaddset(&g->set, SIGPIPE);
    g->guarded = pthread_sigmask(SIG_BLOCK, &g->set, &g->old) == 0 && !sigismember(&g->old, SIGPIPE);
}

static void mpcl_sigpipe_restore(mpcl_sigpipe *g, mpc_conn *c, mpc_status st)
{
    if (!g->guarded) return;
    if (st == MPC_OS && mpc_conn_errno(c) == EPIPE) {
        struct timespec zero = {0, 0};
        int saved = errno;
        while (sigtimedwait(&g->set, NULL, &zero) < 0 && errno == EINTR) {}
        errno = saved;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* conn:send_bytes(s) */
static int mpcl_send_common(lua_State *L, int pipe_writer)
{
    int hidx = 0;
    mpc_conn *c;
    const char *s;
    size_t n = 0;
    mpc_status st;
    if (lua_gettop(L) != 2 || lua_type(L, 2) != LUA_TSTRING || !(c = mpcl_self(L, &hidx)))
        c = mpcl_prep(L, lua_gettop(L), &hidx);
    if (!(s = lua_tolstring(L, 2, &n))) return luaL_error(L, "send_bytes: prep returned no string");
    if (pipe_writer) {
        mpcl_sigpipe g;
        mpcl_sigpipe_block(&g);
        st = mpc_send_bytes(c, s, n);
        mpcl_sigpipe_restore(&g, c, st);
    } else {
        st = mpc_send_bytes(c, s, n);
    }
    if (st == MPC_OK) { lua_pushboolean(L, 1); return 1; }
    return mpcl_fail(L, hidx, st);
}
static int mpcl_send_bytes(lua_State *L) { return mpcl_send_common(L, 0); }
static int mpcl_send_bytes_pipe(lua_State *L) { return mpcl_send_common(L, 1); }

/* conn:send_many(list).  The strings stay referenced by the list for the
 * whole call (no Lua code runs in it), so their pointers stay valid after
 * they leave the stack. */
static int mpcl_send_many_common(lua_State *L, int pipe_writer)
{
    enum { ON_STACK = 256, POP_EVERY = 32 };
    mpc_buf local_[ON_STACK], *v = local_;
    int hidx = 0, base;
    mpc_conn *c;
    size_t i, n;
    mpc_status st;
    if (lua_gettop(L) != 2 || lua_type(L, 2) != LUA_TTABLE || !(c = mpcl_self(L, &hidx)))
        c = mpcl_prep(L, lua_gettop(L), &hidx);
    luaL_checktype(L, 2, LUA_TTABLE);
    n = (size_t)lua_rawlen(L, 2);
    if (n > ON_STACK) {
        if (n > SIZE_MAX / sizeof(mpc_buf)) return luaL_error(L, "send_many: too many messages");
        v = (mpc_buf *)lua_newuserdatauv(L, n * sizeof(mpc_buf), 0);
    }
    luaL_checkstack(L, POP_EVERY + 1, "send_many");
    base = lua_gettop(L);
    for (i = 0; i < n; i++) {
        size_t len = 0;
        if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TSTRING)
            return luaL_error(L, "send_many: message %d is a %s, string expected", (int)i + 1,
                              luaL_typename(L, -1));
        v[i].data = lua_tolstring(L, -1, &len);
        v[i].len = len;
        if ((i + 1) % POP_EVERY == 0) lua_settop(L, base);
    }
    lua_settop(L, base);
    if (pipe_writer) {
        mpcl_sigpipe g;
        mpcl_sigpipe_block(&g);
        st = mpc_send_many(c, v, n);
        mpcl_sigpipe_restore(&g, c, st);
    } else {
        st = mpc_send_many(c, v, n);
    }
    if (st == MPC_OK) { lua_pushboolean(L, 1); return 1; }
    return mpcl_fail(L, hidx, st);
}
static int mpcl_send_many(lua_State *L) { return mpcl_send_many_common(L, 0); }
static int mpcl_send_many_pipe(lua_State *L) { return mpcl_send_many_common(L, 1); }

/* The pending message of len bytes (len > MPCL_SMALL) into a new string,
 * pushed.  Up to MPCL_STAGE_MAX through the staging buffer, in one read;
 * MPC_NOMEM if the buffer cannot grow, with the message still pending and
 * unread (the stream stays in step).  Longer messages through the library's
 * buffer (mpc_recv_bytes takes the pending message). */
static mpc_status mpcl_recv_long(lua_State *L, mpc_conn *c, mpcl_stage *s, uint64_t len,
                                 size_t maxlength)
{
    mpc_status st;
    if (len > (uint64_t)MPCL_STAGE_MAX) {
        void *p = NULL;
        size_t n = 0;
        if ((st = mpc_recv_bytes(c, maxlength, &p, &n)) != MPC_OK) return st;
        lua_pushlstring(L, (const char *)p, n); /* a memory error here leaks p: out of memory anyway */
        mpc_free(p);
        return MPC_OK;
    }
    if (mpcl_stage_reserve(s, (size_t)len) < 0) return MPC_NOMEM;
    if ((st = mpc_recv_payload(c, s->buf, (size_t)len)) != MPC_OK) return st;
    lua_pushlstring(L, (const char *)s->buf, (size_t)len);
    return MPC_OK;
}

/* conn:recv_bytes([maxlength]) */
static int mpcl_recv_bytes(lua_State *L)
{
    char small_[MPCL_SMALL];
    int top = lua_gettop(L), hidx = 0;
    mpc_conn *c;
    size_t len = 0;
    uint64_t declared = 0;
    mpc_status st;
    lua_Integer maxlength = -1;
    if (top <= 2 && (top < 2 || lua_isnil(L, 2) || (lua_isinteger(L, 2) && lua_tointeger(L, 2) >= 0))
        && (c = mpcl_self(L, &hidx)) != NULL) {
        if (top == 2 && !lua_isnil(L, 2)) maxlength = lua_tointeger(L, 2);
    } else {
        c = mpcl_prep(L, top, &hidx);
        maxlength = luaL_checkinteger(L, 2);
    }
    if (maxlength < 0) {
        /* One call for a small message; a longer one stays pending (TOOSHORT). */
        st = mpc_recv_bytes_into(c, small_, sizeof small_, &len);
        if (st == MPC_OK) {
            lua_pushlstring(L, small_, len);
            return 1;
        }
        if (st != MPC_TOOSHORT) return mpcl_fail(L, hidx, st);
        declared = (uint64_t)len;
    } else {
        st = mpc_recv_begin(c, (size_t)maxlength, &declared);
        if (st != MPC_OK) return mpcl_fail(L, hidx, st);
        if (declared <= sizeof small_) {
            if ((st = mpc_recv_payload(c, small_, (size_t)declared)) != MPC_OK) return mpcl_fail(L, hidx, st);
            lua_pushlstring(L, small_, (size_t)declared);
            return 1;
        }
    }
    st = mpcl_recv_long(L, c, (mpcl_stage *)lua_touserdata(L, lua_upvalueindex(3)), declared,
                        maxlength < 0 ? MPC_NO_LIMIT : (size_t)maxlength);
    if (st == MPC_OK) return 1;
    if (st == MPC_NOMEM) {
        lua_pushnil(L);
        lua_pushfstring(L, "recv: out of memory for a %I-byte message", (lua_Integer)declared);
        lua_pushliteral(L, "NOMEM");
        return 3;
    }
    return mpcl_fail(L, hidx, st);
}

/* stage_size() -> bytes the staging buffer holds now (0: none), for tests. */
static int mpcl_stage_size(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)((mpcl_stage *)lua_touserdata(L, lua_upvalueindex(1)))->cap);
    return 1;
}

/* core.conn_methods(slow) -> {send_bytes, send_many, recv_bytes,
 * pipe_send_bytes, pipe_send_many, stage_size}: the C closures above.  slow
 * is a table of the Lua argument checks (send_bytes, send_many, recv_bytes)
 * and fail. */
static int mpcl_conn_methods(lua_State *L)
{
    static const struct { const char *name, *slow; lua_CFunction fn; } methods[] = {
        {"send_bytes", "send_bytes", mpcl_send_bytes},
        {"send_many", "send_many", mpcl_send_many},
        {"pipe_send_bytes", "send_bytes", mpcl_send_bytes_pipe},
        {"pipe_send_many", "send_many", mpcl_send_many_pipe},
        {"recv_bytes", "recv_bytes", mpcl_recv_bytes},
    };
    size_t i;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_createtable(L, 0, 6);
    for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int nup = 2;
        if (lua_getfield(L, 1, methods[i].slow) != LUA_TFUNCTION)
            return luaL_error(L, "conn_methods: slow.%s must be a function", methods[i].slow);
        if (lua_getfield(L, 1, "fail") != LUA_TFUNCTION)
            return luaL_error(L, "conn_methods: slow.fail must be a function");
        if (methods[i].fn == mpcl_recv_bytes) {
            mpcl_stage *s = (mpcl_stage *)lua_newuserdatauv(L, sizeof *s, 0);
            memset(s, 0, sizeof *s);
            lua_createtable(L, 0, 1);
            lua_pushcfunction(L, mpcl_stage_gc);
            lua_setfield(L, -2, "__gc");
            lua_setmetatable(L, -2);
            lua_pushvalue(L, -1);
            lua_pushcclosure(L, mpcl_stage_size, 1);
            lua_setfield(L, 2, "stage_size");
            nup = 3;
        }
        lua_pushcclosure(L, methods[i].fn, nup);
        lua_setfield(L, 2, methods[i].name);
    }
    return 1;
}
%}
%native(conn_methods) int mpcl_conn_methods(lua_State *L);

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
