/*
 * capped_host.c - a Lua host whose allocator refuses to go past a cap, as
 * sandboxes do (issue 14, item 3).  Runs one Lua script (argv[1], with
 * LUA_PATH/LUA_CPATH from the environment as lua5.4 does) with the cap
 * given by MPCONN_LUA_CAP (bytes; default 16 MiB) and a table `host`:
 *   host.sender(fd, count, size)  forks a child that writes count messages
 *                                 of size bytes (multiprocessing framing)
 *                                 to fd, then exits; returns its pid
 *   host.wait(pid)                waits for that child -> exit status
 *   host.heap()                   bytes the C heap holds now (mallinfo2)
 *   host.lua_bytes()              bytes the Lua state holds now
 *   host.alloc_is_ours()          whether lua_getallocf still returns this
 *                                 host's function and userdata, exactly as
 *                                 lua_newstate got them (SPEC 11: require
 *                                 leaves the allocator alone)
 * Exit status: 0 if the script ran without error, 1 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

typedef struct capped {
    size_t used, cap;
} capped;

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    capped *c = (capped *)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        c->used -= old;
        return NULL;
    }
    if (nsize > old && c->used - old + nsize > c->cap) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) c->used = c->used - old + nsize;
    return p;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int host_sender(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    lua_Integer count = luaL_checkinteger(L, 2), size = luaL_checkinteger(L, 3);
    if (size < 0 || size > 0x7FFFFFFF) return luaL_error(L, "size out of range");
    pid_t pid = fork();
    if (pid < 0) return luaL_error(L, "fork: %s", strerror(errno));
    if (pid == 0) {
        unsigned char *buf = malloc((size_t)size + 4);
        if (!buf) _exit(3);
        buf[0] = (unsigned char)(size >> 24);
        buf[1] = (unsigned char)(size >> 16);
        buf[2] = (unsigned char)(size >> 8);
        buf[3] = (unsigned char)size;
        memset(buf + 4, 'z', (size_t)size);
        for (lua_Integer i = 0; i < count; i++)
            if (write_all(fd, buf, (size_t)size + 4) < 0) _exit(4);
        _exit(0);
    }
    lua_pushinteger(L, pid);
    return 1;
}

static int host_wait(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 1;
}

static int host_heap(lua_State *L)
{
    struct mallinfo2 mi = mallinfo2();
    lua_pushinteger(L, (lua_Integer)(mi.uordblks + mi.hblkhd));
    return 1;
}

static int host_lua_bytes(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    lua_pushinteger(L, (lua_Integer)((capped *)ud)->used);
    return 1;
}

/* The allocator and userdata given to lua_newstate. */
static lua_Alloc host_f;
static void *host_ud;

static int host_alloc_is_ours(lua_State *L)
{
    void *ud = NULL;
    lua_Alloc f = lua_getallocf(L, &ud);
    lua_pushboolean(L, f == host_f && ud == host_ud);
    return 1;
}

static int msgh(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

int main(int argc, char **argv)
{
    capped c = {0, (size_t)16 << 20};
    const char *cap = getenv("MPCONN_LUA_CAP");
    if (argc < 2) {
        fprintf(stderr, "usage: capped_host script.lua\n");
        return 2;
    }
    if (cap) c.cap = (size_t)strtoull(cap, NULL, 10);
    host_f = capped_alloc;
    host_ud = &c;
    lua_State *L = lua_newstate(host_f, host_ud);
    if (!L) return 1;
    luaL_openlibs(L);
    static const luaL_Reg fns[] = {
        {"sender", host_sender}, {"wait", host_wait}, {"heap", host_heap}, {"lua_bytes", host_lua_bytes},
        {"alloc_is_ours", host_alloc_is_ours},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_setglobal(L, "host");
    lua_pushcfunction(L, msgh);
    int rc = luaL_loadfile(L, argv[1]);
    if (rc == LUA_OK) rc = lua_pcall(L, 0, 0, 1);
    if (rc != LUA_OK) fprintf(stderr, "capped_host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return rc == LUA_OK ? 0 : 1;
}
