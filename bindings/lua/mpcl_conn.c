/*
 * mpcl_conn.c - the per-message methods as C closures:
 * conn:send_bytes(s), conn:send_many(list) and conn:recv_bytes([maxlength]).
 *
 * They run once per message, so lua/mpconn.lua installs these closures
 * (core.conn_methods) instead of Lua functions over the SWIG wrappers: one
 * C call per message instead of a Lua call, a SWIG argument check and a
 * status/value pair.  Each closure checks the common case only (self a
 * connection table with a live handle, plain arguments) and has Lua check
 * everything else, and failures go through Lua too, so messages and error
 * levels stay those of lua/mpconn.lua; every read and write is done here:
 *   self[1]    the connection's handle (nil once closed)
 *   upvalue 1  prep: the Lua argument check for every case the closure
 *              does not take (see mpcl_prep)
 *   upvalue 2  fail(h, status, level, message): the Lua failure convention
 *              (nil, message, code, or a raised error for misuse)
 *   upvalue 3  recv_bytes only: the staging buffer (mpcl_stage userdata).
 * The rules that keep finalizers harmless are in mpcl.h ("Finalizers").
 *
 * Receiving: Lua 5.4 can only make a string by copying bytes into it
 * (lua_pushlstring; luaL_Buffer copies its box the same way), so a message
 * is read into memory of our own and copied once into its string.  Up to
 * MPCL_SMALL bytes that memory is on the C stack.  Longer messages, up to
 * MPCL_STAGE_MAX, go to one staging buffer per Lua state, kept between
 * calls: the library's fresh buffer per message was page-faulted in again
 * and again (1 MiB ping-pong: ~40 faults per round trip, 6 with the staging
 * buffer).  One buffer per Lua state is enough: it holds a message only
 * between the read and the copy inside lua_pushlstring, where no Lua code
 * runs, so connections and coroutines share it.  It starts at page offset
 * MPCL_STAGE_OFFSET (SPEC 6: buffers at page offset 0 or 16 make copies slow
 * through 4K aliasing), grows to the longest message it took and stays until
 * the module is collected: at most MPCL_STAGE_MAX plus 6 KiB.  Longer
 * messages are read into the library's own buffer (mpc_recv_bytes), held by
 * a holder userdata whose __gc frees it if making the string raises a memory
 * error (a host may cap its Lua allocator).  The module never replaces the
 * state's allocator (SPEC 11).
 * A non-blocking connection (set_timeout(0)) receives through
 * mpc_recv_bytes_into / mpc_recv_bytes instead (mpcl_recv_nb):
 * mpc_recv_begin/payload are blocking-only plumbing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpcl.h"

#define MPCL_SMALL 1024
#define MPCL_STAGE_OFFSET 2112 /* the core's read buffer uses the same page offset */
#define MPCL_STAGE_MAX ((size_t)4 << 20)

#define MPCL_UP_PREP lua_upvalueindex(1)
#define MPCL_UP_FAIL lua_upvalueindex(2)
#define MPCL_UP_STAGE lua_upvalueindex(3)

mpc_conn *mpcl_live(lua_State *L, int hidx, const char *what)
{
    mpc_conn *c = (mpc_conn *)((mpcl_handle *)lua_touserdata(L, hidx))->ptr;
    if (!c) luaL_error(L, "%s: connection is closed", what);
    return c;
}

int mpcl_fail_with(lua_State *L, int fail, int hidx, mpc_conn *c, mpc_status st)
{
    char msg[MPC_ERRMSG_MAX + 64];
    const char *m = c ? mpc_conn_errmsg(c) : NULL;
    int base = lua_gettop(L);
    snprintf(msg, sizeof msg, "%s", m ? m : "");
    lua_pushvalue(L, fail);
    lua_pushvalue(L, hidx);
    lua_pushinteger(L, (lua_Integer)st);
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L) - base;
}

static int mpcl_fail(lua_State *L, int hidx, mpc_conn *c, mpc_status st)
{
    return mpcl_fail_with(L, MPCL_UP_FAIL, hidx, c, st);
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
    lua_pushvalue(L, MPCL_UP_PREP);
    for (i = 1; i <= nargs; i++) lua_pushvalue(L, i);
    lua_call(L, nargs, 1); /* raises for nargs == 0: self is nil */
    lua_replace(L, 2);
    lua_settop(L, 2);
    if (!(c = mpcl_self(L, 2, hidx)))
        luaL_error(L, "mpconn: prep accepted a connection without a handle");
    return c;
}

/* conn:send_bytes(s) */
static int mpcl_send_bytes(lua_State *L)
{
    int hidx = 0;
    mpc_conn *c;
    const char *s;
    size_t n = 0;
    mpc_status st;
    if (lua_gettop(L) != 2 || lua_type(L, 2) != LUA_TSTRING || !(c = mpcl_self(L, 2, &hidx)))
        c = mpcl_prep(L, lua_gettop(L), &hidx);
    if (!(s = lua_tolstring(L, 2, &n))) return luaL_error(L, "send_bytes: prep returned no string");
    if ((st = mpc_send_bytes(c, s, n)) == MPC_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return mpcl_fail(L, hidx, c, st);
}

/* conn:send_many(list).  The strings stay referenced by the list for the
 * whole call, so their pointers stay valid after they leave the stack; the
 * one allocation (the array, for more than ON_STACK messages) comes before
 * the handle is read again. */
static int mpcl_send_many(lua_State *L)
{
    enum { ON_STACK = 256, POP_EVERY = 32 };
    mpc_buf local_[ON_STACK], *v = local_;
    int hidx = 0, base;
    mpc_conn *c;
    size_t i, n;
    mpc_status st;
    if (lua_gettop(L) != 2 || lua_type(L, 2) != LUA_TTABLE || !mpcl_self(L, 2, &hidx))
        mpcl_prep(L, lua_gettop(L), &hidx);
    luaL_checktype(L, 2, LUA_TTABLE);
    n = (size_t)lua_rawlen(L, 2);
    if (n > ON_STACK) {
        if (n > SIZE_MAX / sizeof(mpc_buf)) return luaL_error(L, "send_many: too many messages");
        v = (mpc_buf *)lua_newuserdatauv(L, n * sizeof(mpc_buf), 0);
        n = (size_t)lua_rawlen(L, 2); /* a finalizer may have changed the list: never more than v holds */
        if (n * sizeof(mpc_buf) > lua_rawlen(L, -1)) return luaL_error(L, "send_many: the list grew during the call");
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
    c = mpcl_live(L, hidx, "send_many");
    if ((st = mpc_send_many(c, v, n)) == MPC_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return mpcl_fail(L, hidx, c, st);
}

/* ---- the staging buffer ------------------------------------------------------ */

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

/* The pending message of len bytes (len > MPCL_SMALL) into a new string,
 * pushed.  Up to MPCL_STAGE_MAX through the staging buffer, in one read;
 * MPC_NOMEM if the buffer cannot grow, with the message still pending and
 * unread (the stream stays in step).  Longer messages through the library's
 * buffer, held by a holder (mpc_recv_bytes takes the pending message, or
 * the next one if a finalizer run by the holder's allocation took it).
 * *cp is the connection, read again after that allocation. */
static mpc_status mpcl_recv_long(lua_State *L, int hidx, mpc_conn **cp, mpcl_stage *s, uint64_t len,
                                 size_t maxlength)
{
    mpc_status st;
    if (len > (uint64_t)MPCL_STAGE_MAX) {
        size_t n = 0;
        mpcl_hold *h = mpcl_hold_new(L);
        *cp = mpcl_live(L, hidx, "recv_bytes");
        if ((st = mpc_recv_bytes(*cp, maxlength, &h->buf, &n)) != MPC_OK) return st;
        lua_pushlstring(L, (const char *)h->buf, n); /* a memory error: the holder frees the buffer */
        mpcl_hold_release(h);
        return MPC_OK;
    }
    if (mpcl_stage_reserve(s, (size_t)len) < 0) return MPC_NOMEM;
    if ((st = mpc_recv_payload(*cp, s->buf, (size_t)len)) != MPC_OK) return st;
    lua_pushlstring(L, (const char *)s->buf, (size_t)len);
    return MPC_OK;
}

/* recv_bytes of a non-blocking connection (mpc_recv_begin/payload are
 * blocking-only plumbing).  The core makes the next message whole inside
 * the connection before handing any of it over, so MPC_AGAIN (returned as
 * nil, "wantread" by the failure function) loses nothing and the next call
 * goes on.  With maxlength: mpc_recv_bytes, which refuses a message over
 * maxlength from its header, before buffering it.  Without: a small
 * message in one call into the stack buffer; a longer one (MPC_TOOSHORT
 * leaves it whole in the connection, len its length) then into the staging
 * buffer (no Lua allocation between the two calls) or, over
 * MPCL_STAGE_MAX, the library's buffer under a holder. */
static int mpcl_recv_nb(lua_State *L, int hidx, mpc_conn *c, lua_Integer maxlength)
{
    size_t len = 0;
    mpc_status st;
    mpcl_hold *h;
    if (maxlength < 0) {
        char small_[MPCL_SMALL];
        mpcl_stage *s = (mpcl_stage *)lua_touserdata(L, MPCL_UP_STAGE);
        st = mpc_recv_bytes_into(c, small_, sizeof small_, &len);
        if (st == MPC_OK) {
            lua_pushlstring(L, small_, len);
            return 1;
        }
        if (st != MPC_TOOSHORT) return mpcl_fail(L, hidx, c, st);
        if (len <= MPCL_STAGE_MAX) {
            if (mpcl_stage_reserve(s, len) < 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "recv: out of memory for a %I-byte message", (lua_Integer)len);
                lua_pushliteral(L, "NOMEM");
                return 3;
            }
            if ((st = mpc_recv_bytes_into(c, s->buf, s->cap, &len)) != MPC_OK) return mpcl_fail(L, hidx, c, st);
            lua_pushlstring(L, (const char *)s->buf, len);
            return 1;
        }
    }
    h = mpcl_hold_new(L);
    c = mpcl_live(L, hidx, "recv_bytes");
    st = mpc_recv_bytes(c, maxlength < 0 ? MPC_NO_LIMIT : (size_t)maxlength, &h->buf, &len);
    if (st != MPC_OK) return mpcl_fail(L, hidx, c, st);
    lua_pushlstring(L, (const char *)h->buf, len); /* a memory error: the holder frees the buffer */
    mpcl_hold_release(h);
    return 1;
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
        && (c = mpcl_self(L, top, &hidx)) != NULL) {
        if (top == 2 && !lua_isnil(L, 2)) maxlength = lua_tointeger(L, 2);
    } else {
        c = mpcl_prep(L, top, &hidx);
        maxlength = luaL_checkinteger(L, 2);
    }
    {
        /* A message already whole in the read buffer: off the stream, then
         * straight from there into its string (see "Finalizers" in mpcl.h:
         * the bytes stay put until the next call on c). */
        const void *view;
        if (mpc_recv_peek(c, maxlength < 0 ? MPC_NO_LIMIT : (size_t)maxlength, &view, &len) == MPC_OK) {
            mpc_recv_consume(c);
            lua_pushlstring(L, (const char *)view, len);
            return 1;
        }
    }
    if (!mpc_conn_blocking(c)) return mpcl_recv_nb(L, hidx, c, maxlength);
    if (maxlength < 0) {
        /* One call for a small message; a longer one stays pending (TOOSHORT). */
        st = mpc_recv_bytes_into(c, small_, sizeof small_, &len);
        if (st == MPC_OK) {
            lua_pushlstring(L, small_, len);
            return 1;
        }
        if (st != MPC_TOOSHORT) return mpcl_fail(L, hidx, c, st);
        declared = (uint64_t)len;
    } else {
        st = mpc_recv_begin(c, (size_t)maxlength, &declared);
        if (st != MPC_OK) return mpcl_fail(L, hidx, c, st);
        if (declared <= sizeof small_) {
            if ((st = mpc_recv_payload(c, small_, (size_t)declared)) != MPC_OK) return mpcl_fail(L, hidx, c, st);
            lua_pushlstring(L, small_, (size_t)declared);
            return 1;
        }
    }
    st = mpcl_recv_long(L, hidx, &c, (mpcl_stage *)lua_touserdata(L, MPCL_UP_STAGE), declared,
                        maxlength < 0 ? MPC_NO_LIMIT : (size_t)maxlength);
    if (st == MPC_OK) return 1;
    if (st == MPC_NOMEM) {
        lua_pushnil(L);
        lua_pushfstring(L, "recv: out of memory for a %I-byte message", (lua_Integer)declared);
        lua_pushliteral(L, "NOMEM");
        return 3;
    }
    return mpcl_fail(L, hidx, c, st);
}

/* stage_size() -> bytes the staging buffer holds now (0: none), for tests. */
static int mpcl_stage_size(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)((mpcl_stage *)lua_touserdata(L, lua_upvalueindex(1)))->cap);
    return 1;
}

/* core.conn_methods(slow) -> {send_bytes, send_many, recv_bytes,
 * stage_size}: the C closures above.  slow is a table of the Lua argument
 * checks (send_bytes, send_many, recv_bytes) and fail. */
int mpcl_conn_methods(lua_State *L)
{
    static const struct { const char *name; lua_CFunction fn; } methods[] = {
        {"send_bytes", mpcl_send_bytes},
        {"send_many", mpcl_send_many},
        {"recv_bytes", mpcl_recv_bytes},
    };
    size_t i;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_createtable(L, 0, 4);
    for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int nup = 2;
        if (lua_getfield(L, 1, methods[i].name) != LUA_TFUNCTION)
            return luaL_error(L, "conn_methods: slow.%s must be a function", methods[i].name);
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
