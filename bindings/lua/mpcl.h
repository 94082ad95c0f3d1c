/*
 * mpcl.h - private header of the Lua binding's hand-written C (mpcl_*.c),
 * shared with the SWIG interface mpconn_lua.i.  Not installed.
 *
 *   mpcl_module.c  handles (the module's own userdata), options tables,
 *                  scratch memory, the holder, close/detach/wait, the clock
 *   mpcl_conn.c    the per-message methods send_bytes, send_many,
 *                  recv_bytes (C closures installed by lua/mpconn.lua)
 *   mpcl_values.c  Lua values <-> mpc_value trees: send, recv, encode,
 *                  decode, repr
 *
 * Finalizers.  Any Lua allocation (a string, a table, a userdata, a Lua
 * call that grows the stack) may run a GC step, and the GC step may run
 * __gc metamethods: Lua code that can close, receive on or send on the very
 * connection a function is using.  Two rules keep that safe everywhere in
 * this binding:
 *   - closing (core.conn_close, core.conn_detach, core.listener_close, a
 *     handle's __gc) clears the pointer inside the handle before the object
 *     is freed, and C code reads the pointer from the handle (kept on its
 *     stack, so alive) after its last Lua allocation and before each use
 *     (mpcl_live; the SWIG wrappers re-read it in their check typemap,
 *     after every argument is converted): a connection closed in the
 *     meantime raises "<what>: connection is closed" instead of touching
 *     freed memory;
 *   - a message is taken off the stream before its string is made.
 *     lua_pushlstring allocates the string and copies the bytes into it
 *     before its GC step runs (an emergency collection, on a failed
 *     allocation, never runs finalizers), so a finalizer that receives on
 *     the same connection gets the next message, never the same one again,
 *     and nothing the finalizer does can move the bytes being copied.  A
 *     memory error raised there loses that message (it was consumed).
 */
#ifndef MPCL_H
#define MPCL_H

#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "mpconn.h"

/* ---- handles ---------------------------------------------------------------
 * A connection or listener handle is a full userdata holding one pointer,
 * with the metatable MPCL_CONN_MT or MPCL_LISTENER_MT (registry names, made
 * by mpcl_setup).  The handle owns its object: its __gc closes it.  A
 * closed (or detached) handle holds NULL.  lua/mpconn.lua keeps a
 * connection's handle at [1] of the connection table, a listener's at
 * ._listener. */
#define MPCL_CONN_MT "mpconn.conn"
#define MPCL_LISTENER_MT "mpconn.listener"
#define MPCL_HOLD_MT "mpconn.hold"

typedef struct mpcl_handle {
    const char *kind; /* mpcl_conn_kind or mpcl_listener_kind, set with the metatable */
    void *ptr;        /* mpc_conn * or mpc_listener *; NULL once closed */
} mpcl_handle;

/* The kinds.  The metatable is what tells a handle (luaL_testudata, on
 * every cold path); the per-message path checks the size and the kind
 * instead, which the same function set with the metatable: a metatable
 * comparison costs three API calls, about 110 instructions a message
 * (issue 15: within 3% of before).  Only C can write a userdata's bytes,
 * and only mpcl_module.c writes these. */
extern const char mpcl_conn_kind[];
extern const char mpcl_listener_kind[];

/* Makes the metatables (called once by luaopen_mpconn_core). */
void mpcl_setup(lua_State *L);

/* Pushes a new handle owning c (nil for NULL).  If the handle cannot be
 * made (a memory error), closes c and raises: c never leaks. */
void mpcl_push_conn(lua_State *L, mpc_conn *c);
void mpcl_push_listener(lua_State *L, mpc_listener *l);

/* The pointer of the connection / listener handle at idx (NULL: closed);
 * raises "<what>: connection handle expected" for anything else. */
mpc_conn *mpcl_check_conn(lua_State *L, int idx, const char *what);
mpc_listener *mpcl_check_listener(lua_State *L, int idx, const char *what);

/* ---- argument helpers (the typemaps) -------------------------------------- */
/* A payload argument must be a Lua string; numbers are not converted. */
int mpcl_isbytes(lua_State *L, int idx);
int mpcl_isniltable(lua_State *L, int idx);
/* Scratch memory owned by the Lua stack (collected with it). */
void *mpcl_scratch(lua_State *L, size_t n);
/* Fills *o from the options table at idx (keys: the C field names; tls: a
 * table keyed by mpc_tls_options's field names, no_verify a boolean).
 * What *o points to (strings, the TLS struct) is pushed and left on the
 * stack, so it lives until the calling C function returns. */
void mpcl_options(lua_State *L, int idx, mpc_options *o);

/* ---- the holder ------------------------------------------------------------
 * C memory that a call owns while it allocates Lua memory, released by its
 * __gc if a Lua error interrupts the call, else at once by
 * mpcl_hold_release.  Used for long received messages (buf) and by the
 * value conversions (tree, buf, and the pointer set of shared nodes). */
typedef struct mpcl_hold {
    mpc_value *tree;
    void *buf;              /* a message, a pickle or a repr text (mpc_free) */
    const mpc_value **keys; /* open addressing; NULL = empty slot */
    unsigned char *cnt;     /* 1 = seen once, 2 = shared */
    size_t cap, n, shared;
} mpcl_hold;

/* A new holder, pushed.  An allocation: re-read handles after it. */
mpcl_hold *mpcl_hold_new(lua_State *L);
void mpcl_hold_release(mpcl_hold *h);

/* ---- the per-message path (mpcl_conn.c, used by mpcl_values.c) ------------- */

/* The connection of the table at index 1, whose handle is pushed at top + 1
 * (top: the stack top now, which the callers know; *hidx = top + 1), or
 * NULL if self is not a table holding a live connection handle; then the
 * stack is as it was, so the caller's argument check sees the caller's
 * arguments only.  Runs once per message, hence inline; the handle is
 * addressed by its positive index (the cheapest case of Lua's index
 * lookup) and lua_gettop is not called again. */
static inline mpc_conn *mpcl_self(lua_State *L, int top, int *hidx)
{
    int h = top + 1;
    const mpcl_handle *u;
    if (lua_type(L, 1) != LUA_TTABLE) return NULL;
    if (lua_rawgeti(L, 1, 1) != LUA_TUSERDATA || lua_rawlen(L, h) != sizeof *u) goto none;
    u = (const mpcl_handle *)lua_touserdata(L, h);
    if (u->kind != mpcl_conn_kind || !u->ptr) goto none;
    *hidx = h;
    return (mpc_conn *)u->ptr;
none:
    lua_settop(L, top);
    return NULL;
}

/* The connection of the handle at hidx (from mpcl_self), read again after a
 * Lua allocation: raises "<what>: connection is closed" if a finalizer
 * closed it meanwhile. */
mpc_conn *mpcl_live(lua_State *L, int hidx, const char *what);

/* Calls fail (the function at index fail) as fail(h, st, nil, message) and
 * returns its results: nil, message, code (or it raises).  The message of c
 * is copied before anything is allocated. */
int mpcl_fail_with(lua_State *L, int fail, int hidx, mpc_conn *c, mpc_status st);

/* ---- what SWIG registers (%native in mpconn_lua.i) ------------------------ */
int mpcl_monotonic(lua_State *L);
int mpcl_conn_close(lua_State *L);
int mpcl_conn_detach(lua_State *L);
int mpcl_listener_close(lua_State *L);
int mpcl_wait(lua_State *L);
int mpcl_conn_methods(lua_State *L);
int mpcl_value_setup(lua_State *L);

#endif
