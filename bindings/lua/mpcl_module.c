/*
 * mpcl_module.c - the Lua binding's handles, argument helpers, the holder,
 * close/detach/wait and the clock (see mpcl.h).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpcl.h"

/* ---- handles --------------------------------------------------------------- */

const char mpcl_conn_kind[] = MPCL_CONN_MT;
const char mpcl_listener_kind[] = MPCL_LISTENER_MT;

/* A handle's __gc, and what closing one does: clear the handle, then free
 * the object (a closed handle is NULL for every later reader, mpcl.h
 * "Finalizers"). */
static int mpcl_handle_gc(lua_State *L)
{
    mpcl_handle *u = (mpcl_handle *)lua_touserdata(L, 1);
    void *p = u->ptr;
    u->ptr = NULL;
    if (u->kind == mpcl_listener_kind) mpc_listener_close((mpc_listener *)p);
    else mpc_conn_close((mpc_conn *)p);
    return 0;
}

static int mpcl_hold_gc(lua_State *L)
{
    mpcl_hold_release((mpcl_hold *)lua_touserdata(L, 1));
    return 0;
}

void mpcl_setup(lua_State *L)
{
    static const struct { const char *name; lua_CFunction gc; } mts[] = {
        {MPCL_CONN_MT, mpcl_handle_gc}, {MPCL_LISTENER_MT, mpcl_handle_gc}, {MPCL_HOLD_MT, mpcl_hold_gc},
    };
    size_t i;
    for (i = 0; i < sizeof mts / sizeof mts[0]; i++) {
        if (luaL_newmetatable(L, mts[i].name)) {
            lua_pushcfunction(L, mts[i].gc);
            lua_setfield(L, -2, "__gc");
            /* getmetatable(h) from Lua: the name, never the table itself. */
            lua_pushstring(L, mts[i].name);
            lua_setfield(L, -2, "__metatable");
        }
        lua_pop(L, 1);
    }
}

/* make(p, is_listener) -> a new handle holding p (run protected). */
static int mpcl_handle_make(lua_State *L)
{
    int listener = lua_toboolean(L, 2);
    mpcl_handle *u = (mpcl_handle *)lua_newuserdatauv(L, sizeof *u, 0);
    u->kind = listener ? mpcl_listener_kind : mpcl_conn_kind;
    u->ptr = lua_touserdata(L, 1);
    luaL_setmetatable(L, listener ? MPCL_LISTENER_MT : MPCL_CONN_MT);
    return 1;
}

/* Pushing a C function, a light userdata and a boolean allocates nothing:
 * everything that can fail runs inside the protected call. */
static void mpcl_push_handle(lua_State *L, void *p, int is_listener)
{
    if (!p) {
        lua_pushnil(L);
        return;
    }
    lua_pushcfunction(L, mpcl_handle_make);
    lua_pushlightuserdata(L, p);
    lua_pushboolean(L, is_listener);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        if (is_listener) mpc_listener_close((mpc_listener *)p);
        else mpc_conn_close((mpc_conn *)p);
        lua_error(L);
    }
}

void mpcl_push_conn(lua_State *L, mpc_conn *c) { mpcl_push_handle(L, c, 0); }
void mpcl_push_listener(lua_State *L, mpc_listener *l) { mpcl_push_handle(L, l, 1); }

static mpcl_handle *mpcl_handle_arg(lua_State *L, int idx, const char *mt, const char *what, const char *kind)
{
    mpcl_handle *u = (mpcl_handle *)luaL_testudata(L, idx, mt);
    if (!u) luaL_error(L, "%s: %s handle expected, got %s", what, kind, luaL_typename(L, idx));
    return u;
}

/* (nil is a closed handle, as SWIG's pointers had it.) */
mpc_conn *mpcl_check_conn(lua_State *L, int idx, const char *what)
{
    if (lua_isnoneornil(L, idx)) return NULL;
    return (mpc_conn *)mpcl_handle_arg(L, idx, MPCL_CONN_MT, what, "connection")->ptr;
}

mpc_listener *mpcl_check_listener(lua_State *L, int idx, const char *what)
{
    if (lua_isnoneornil(L, idx)) return NULL;
    return (mpc_listener *)mpcl_handle_arg(L, idx, MPCL_LISTENER_MT, what, "listener")->ptr;
}

/* conn_close(h), listener_close(h) */
int mpcl_conn_close(lua_State *L)
{
    mpcl_handle_arg(L, 1, MPCL_CONN_MT, "conn_close", "connection");
    return mpcl_handle_gc(L);
}

int mpcl_listener_close(lua_State *L)
{
    mpcl_handle_arg(L, 1, MPCL_LISTENER_MT, "listener_close", "listener");
    return mpcl_handle_gc(L);
}

/* conn_detach(h) -> the descriptor (-1 if already closed). */
int mpcl_conn_detach(lua_State *L)
{
    mpcl_handle *u = mpcl_handle_arg(L, 1, MPCL_CONN_MT, "conn_detach", "connection");
    mpc_conn *c = (mpc_conn *)u->ptr;
    u->ptr = NULL;
    lua_pushinteger(L, c ? mpc_conn_detach(c) : -1);
    return 1;
}

/* wait(handles, ms) -> status, {indices of the ready ones}.  Every array is
 * allocated before the first handle is read, so a finalizer cannot close a
 * connection between the reading and the call. */
int mpcl_wait(lua_State *L)
{
    size_t i, n, nready = 0;
    mpc_ms ms = (mpc_ms)luaL_checkinteger(L, 2);
    mpc_conn **v;
    int *ready;
    mpc_status st;
    luaL_checktype(L, 1, LUA_TTABLE);
    n = (size_t)lua_rawlen(L, 1);
    if (n > (SIZE_MAX / 2) / (sizeof *v + sizeof *ready)) return luaL_error(L, "wait: too many connections");
    v = (mpc_conn **)lua_newuserdatauv(L, n ? n * (sizeof *v + sizeof *ready) : 1, 0);
    ready = (int *)(void *)(v + n);
    if ((size_t)lua_rawlen(L, 1) != n) return luaL_error(L, "wait: the list changed during the call");
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        v[i] = (mpc_conn *)mpcl_handle_arg(L, -1, MPCL_CONN_MT, "wait", "connection")->ptr;
        if (!v[i]) return luaL_error(L, "bad argument #1 to 'wait' (connection %d is closed)", (int)i + 1);
        lua_pop(L, 1);
    }
    st = mpc_wait(v, n, ms, ready, &nready);
    lua_pushinteger(L, (lua_Integer)st);
    lua_createtable(L, (int)(nready < 1000 ? nready : 1000), 0);
    if (st == MPC_OK) {
        lua_Integer k = 0;
        for (i = 0; i < n; i++)
            if (ready[i]) { lua_pushinteger(L, (lua_Integer)i + 1); lua_rawseti(L, -2, ++k); }
    }
    return 2;
}

/* ---- argument helpers ------------------------------------------------------ */

int mpcl_isbytes(lua_State *L, int idx) { return lua_type(L, idx) == LUA_TSTRING; }
int mpcl_isniltable(lua_State *L, int idx) { return lua_isnoneornil(L, idx) || lua_istable(L, idx); }
void *mpcl_scratch(lua_State *L, size_t n) { return lua_newuserdatauv(L, n ? n : 1, 0); }

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

/* Reads an optional string field of the table at idx, left on the stack
 * (nil or the string) so that the pointer stays valid for the call. */
static const char *mpcl_optstr(lua_State *L, int idx, const char *what, const char *name)
{
    lua_getfield(L, idx, name);
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n = 0;
        const char *s = lua_tolstring(L, -1, &n);
        if (strlen(s) != n) luaL_error(L, "option %s%s: the string contains a zero byte", what, name);
        return s;
    }
    if (!lua_isnil(L, -1)) luaL_error(L, "option %s%s: string expected, got %s", what, name, luaL_typename(L, -1));
    return NULL;
}

/* The tls field: nil, or a table keyed by mpc_tls_options's field names.
 * The struct is a userdata and the strings stay on the stack (7 slots in
 * all), so everything o->tls points to lives as long as the call. */
static void mpcl_tls_options(lua_State *L, int idx, mpc_options *o)
{
    mpc_tls_options *t;
    int tidx;
    lua_getfield(L, idx, "tls");
    if (lua_isnil(L, -1)) return;
    if (!lua_istable(L, -1)) luaL_error(L, "option tls: table expected, got %s", luaL_typename(L, -1));
    tidx = lua_gettop(L);
    t = (mpc_tls_options *)mpcl_scratch(L, sizeof *t);
    memset(t, 0, sizeof *t);
    t->certificate = mpcl_optstr(L, tidx, "tls.", "certificate");
    t->key = mpcl_optstr(L, tidx, "tls.", "key");
    t->cafile = mpcl_optstr(L, tidx, "tls.", "cafile");
    t->capath = mpcl_optstr(L, tidx, "tls.", "capath");
    t->server_name = mpcl_optstr(L, tidx, "tls.", "server_name");
    lua_getfield(L, tidx, "no_verify");
    t->no_verify = lua_toboolean(L, -1) && !(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 0);
    lua_pop(L, 1);
    o->tls = t;
}

/* The strings stay on the stack (pushed, never popped), so their
 * pointers stay valid for the whole call, whatever a metamethod or a
 * finalizer does to the table meanwhile. */
void mpcl_options(lua_State *L, int idx, mpc_options *o)
{
    lua_Integer v = 0;
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 12, "options");
    mpc_options_init(o);
    lua_getfield(L, idx, "authkey");
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n = 0;
        o->authkey = lua_tolstring(L, -1, &n);
        o->authkey_len = n;
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "option authkey: string expected, got %s", luaL_typename(L, -1));
    }
    lua_getfield(L, idx, "digest");
    if (lua_type(L, -1) == LUA_TSTRING) o->digest = lua_tostring(L, -1);
    else if (!lua_isnil(L, -1)) luaL_error(L, "option digest: string expected, got %s", luaL_typename(L, -1));
    if (mpcl_optint(L, idx, "backlog", &v)) o->backlog = (int)v;
    if (mpcl_optint(L, idx, "dialect", &v)) o->dialect = (mpc_dialect)v;
    if (mpcl_optint(L, idx, "handshake_timeout", &v)) o->handshake_timeout = (mpc_ms)v;
    if (mpcl_optint(L, idx, "connect_timeout", &v)) o->connect_timeout = (mpc_ms)v;
    if (mpcl_optint(L, idx, "io_timeout", &v)) o->io_timeout = (mpc_ms)v;
    if (mpcl_optint(L, idx, "max_message_size", &v)) o->max_message_size = (uint64_t)v;
    if (mpcl_optint(L, idx, "unix_mode", &v)) o->unix_mode = (unsigned)v;
    if (mpcl_optint(L, idx, "read_ahead", &v)) o->read_ahead = v != 0;
    if (mpcl_optint(L, idx, "nonblocking", &v)) o->nonblocking = v != 0;
    mpcl_tls_options(L, idx, o);
}

/* ---- the holder ------------------------------------------------------------ */

void mpcl_hold_release(mpcl_hold *h)
{
    mpc_value_free(h->tree);
    mpc_free(h->buf);
    free(h->keys);
    free(h->cnt);
    memset(h, 0, sizeof *h);
}

mpcl_hold *mpcl_hold_new(lua_State *L)
{
    mpcl_hold *h = (mpcl_hold *)lua_newuserdatauv(L, sizeof *h, 0);
    memset(h, 0, sizeof *h);
    luaL_setmetatable(L, MPCL_HOLD_MT);
    return h;
}

/* ---- mpconn.monotonic() ------------------------------------------------------
 * Seconds (a float) on CLOCK_MONOTONIC, for deadlines and benchmarks in
 * scripts (Lua's os.time has one-second steps and os.clock counts CPU
 * time).  Not part of the C API. */
int mpcl_monotonic(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}
