/*
 * alloc_shim.c - a test-only Lua module (mpconn_test_alloc) for
 * test_recv_direct.lua: what a host program may do to a Lua state that the
 * in-place receive of bindings/lua/mpconn_lua.i must survive.
 *
 *   wrap()        stacks a forwarding allocator of its own on top of the
 *                 state's current one (as a host that counts memory would)
 *   unwrap()      takes it out again if it is still on top -> boolean
 *   calls()       allocator calls it forwarded since wrap()
 *   run(code)     runs code (a chunk) in a new Lua state of this process,
 *                 with this state's package.path and package.cpath, closes
 *                 that state and returns the chunk's first result as a
 *                 string (or "error: <message>")
 *
 * The wrapper is taken out at the latest when the module is collected (its
 * finalizer runs before mpconn's when loaded after it, as in the tests).
 */
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

typedef struct shim {
    lua_Alloc f;
    void *ud;
    lua_Integer calls;
} shim;

static void *shim_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    shim *s = (shim *)ud;
    s->calls++;
    return s->f(s->ud, ptr, osize, nsize);
}

/* The shim in force on L, or NULL. */
static shim *shim_top(lua_State *L)
{
    void *ud = NULL;
    return lua_getallocf(L, &ud) == shim_alloc ? (shim *)ud : NULL;
}

static int shim_wrap(lua_State *L)
{
    shim *s;
    if (shim_top(L)) return luaL_error(L, "already wrapped");
    if (!(s = (shim *)calloc(1, sizeof *s))) return luaL_error(L, "out of memory");
    s->f = lua_getallocf(L, &s->ud);
    lua_setallocf(L, shim_alloc, s);
    lua_pushboolean(L, 1);
    return 1;
}

static int shim_unwrap(lua_State *L)
{
    shim *s = shim_top(L);
    if (s) {
        lua_setallocf(L, s->f, s->ud);
        free(s);
    }
    lua_pushboolean(L, s != NULL);
    return 1;
}

static int shim_calls(lua_State *L)
{
    shim *s = shim_top(L);
    lua_pushinteger(L, s ? s->calls : -1);
    return 1;
}

static int shim_run(lua_State *L)
{
    const char *code = luaL_checkstring(L, 1);
    lua_State *N = luaL_newstate();
    const char *fields[] = {"path", "cpath"};
    int i;
    if (!N) return luaL_error(L, "cannot create a Lua state");
    luaL_openlibs(N);
    lua_getglobal(N, "package");
    lua_getglobal(L, "package");
    for (i = 0; i < 2; i++) {
        lua_getfield(L, -1, fields[i]);
        lua_pushstring(N, lua_tostring(L, -1));
        lua_setfield(N, -2, fields[i]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pop(N, 1);
    if (luaL_loadstring(N, code) != LUA_OK || lua_pcall(N, 0, 1, 0) != LUA_OK)
        lua_pushfstring(L, "error: %s", lua_tostring(N, -1));
    else
        lua_pushstring(L, luaL_tolstring(N, -1, NULL));
    lua_close(N);
    return 1;
}

static int shim_gc(lua_State *L)
{
    shim *s = shim_top(L);
    if (s) {
        lua_setallocf(L, s->f, s->ud);
        free(s);
    }
    return 0;
}

int luaopen_mpconn_test_alloc(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"wrap", shim_wrap}, {"unwrap", shim_unwrap}, {"calls", shim_calls}, {"run", shim_run},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    /* A sentinel whose finalizer takes the wrapper out, kept by the module. */
    lua_newuserdatauv(L, 1, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, shim_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "_sentinel");
    return 1;
}
