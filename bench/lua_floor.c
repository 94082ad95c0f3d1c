/*
 * lua_floor.c - the Lua floor of the benchmark (SPEC 6, issue 15): the least
 * a Lua binding of this protocol must do, as a minimal Lua C module.
 *
 * Two hot functions: send_bytes(conn, s) writes header and payload with one
 * writev; recv_bytes(conn) frames through the same buffered reader as the
 * best plain C in bench_c.c (one read of up to 256 KiB serves many small
 * frames, large payloads are read straight into a buffer) and makes one Lua
 * string per message with lua_pushlstring.  send_many(conn, t) is the
 * batched send: many messages to a writev, small ones copied together.  Nothing else: no
 * options, no timeouts, no handshake, errors raise.  The connection is a
 * userdata whose metatable is checked against an upvalue (a safe binding
 * must check, this is the cheapest check).
 *
 * Setup: listen(spec) -> fd, address ("127.0.0.1:0" or a socket path);
 * accept(fd) -> conn; connect(address) -> conn; close_fd(fd); conn:close();
 * monotonic() -> seconds.  Driven by bench_lua.lua (argument "floor"), never
 * loaded with mpconn (which would change the state's allocator).
 *
 * Built by bench/CMakeLists.txt as <build>/bench/lua_floor.so when the Lua
 * module is built.
 */
#include <lauxlib.h>
#include <lua.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUF_CAP ((size_t)256 * 1024)
/* A payload part at least this long is read straight into its buffer. */
#define BUF_DIRECT (BUF_CAP / 4)
/* send_many: iovecs per writev (Linux IOV_MAX), payloads copied into the
 * staging buffer up to COPY_MAX bytes, staging buffer size. */
#define IOV_CAP 1024
#define COPY_MAX 512
#define STAGE_CAP ((size_t)64 * 1024)
#define META "lua_floor.conn"

typedef struct floor_conn {
    int fd;
    char *buf; /* BUF_CAP bytes, 64 bytes into its allocation */
    size_t pos, end;
    char *big; /* a payload that is not all buffered, read here first */
    size_t big_cap;
    char *stage; /* send_many's staging buffer, STAGE_CAP bytes */
} floor_conn;

static int fail(lua_State *L, const char *what)
{
    return luaL_error(L, "%s: %s", what, strerror(errno));
}

static floor_conn *check_conn(lua_State *L)
{
    floor_conn *c = lua_touserdata(L, 1);
    if (c == NULL || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
        luaL_typeerror(L, 1, "lua_floor connection");
    lua_pop(L, 1);
    if (c->fd < 0)
        luaL_error(L, "closed connection");
    return c;
}

static void full_write(lua_State *L, int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            fail(L, "writev");
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

/* Reads once (up to the free space), after moving what is left to the
 * front; 0 at end of file. */
static size_t buf_fill(lua_State *L, floor_conn *c)
{
    if (c->pos == c->end) {
        c->pos = c->end = 0;
    } else if (c->pos > 0 && BUF_CAP - c->end < 64 * 1024) {
        memmove(c->buf, c->buf + c->pos, c->end - c->pos);
        c->end -= c->pos;
        c->pos = 0;
    }
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->end, BUF_CAP - c->end);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail(L, "read");
        c->end += (size_t)n;
        return (size_t)n;
    }
}

static void full_read(lua_State *L, int fd, char *p, size_t len)
{
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            fail(L, "read");
        if (r == 0)
            luaL_error(L, "end of file inside a message");
        p += r;
        len -= (size_t)r;
    }
}

/* conn:send_bytes(s) -> true */
static int floor_send(lua_State *L)
{
    floor_conn *c = check_conn(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    if (len > INT32_MAX)
        return luaL_error(L, "message too long for the short header");
    uint32_t hdr = htonl((uint32_t)len);
    struct iovec iov[2] = {{&hdr, 4}, {(void *)s, len}};
    full_write(L, c->fd, iov, len ? 2 : 1);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:send_many(t) -> true: the strings t[1..#t] in as few writev calls
 * as the iovec limit allows.  Small payloads are copied behind their header
 * into a staging buffer (the kernel's per-iovec cost is more than the copy:
 * 1,024 iovecs of 4 and 16 bytes made a writev 2x slower); larger ones
 * stand as their own iovec after a staged header. */
static int floor_send_many(lua_State *L)
{
    floor_conn *c = check_conn(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2);
    struct iovec iov[IOV_CAP];
    int k = 0;           /* iovecs in use */
    size_t used = 0;     /* staged bytes */
    int staged_run = 0;  /* iov[k - 1] ends at stage + used */
    for (lua_Integer i = 1; i <= n; i++) {
        size_t len;
        lua_rawgeti(L, 2, i);
        const char *s = lua_tolstring(L, -1, &len);
        lua_pop(L, 1); /* still referenced by the table */
        if (s == NULL || len > INT32_MAX)
            return luaL_error(L, "send_many: item %d is not a string of < 2 GiB", (int)i);
        int copy = len <= COPY_MAX;
        if (k + 2 > IOV_CAP || used + 4 + (copy ? len : 0) > STAGE_CAP) {
            full_write(L, c->fd, iov, k);
            k = 0;
            used = 0;
            staged_run = 0;
        }
        uint32_t hdr = htonl((uint32_t)len);
        char *at = c->stage + used;
        memcpy(at, &hdr, 4);
        if (copy)
            memcpy(at + 4, s, len);
        size_t staged = 4 + (copy ? len : 0);
        used += staged;
        if (staged_run)
            iov[k - 1].iov_len += staged;
        else
            iov[k++] = (struct iovec){at, staged};
        staged_run = copy;
        if (!copy)
            iov[k++] = (struct iovec){(void *)s, len};
    }
    if (k > 0)
        full_write(L, c->fd, iov, k);
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:recv_bytes() -> string | nil, "closed" */
static int floor_recv(lua_State *L)
{
    floor_conn *c = check_conn(L);
    while (c->end - c->pos < 4) {
        if (buf_fill(L, c) == 0) {
            if (c->end != c->pos)
                return luaL_error(L, "end of file inside a header");
            lua_pushnil(L);
            lua_pushliteral(L, "closed");
            return 2;
        }
    }
    uint32_t hdr;
    memcpy(&hdr, c->buf + c->pos, 4);
    c->pos += 4;
    size_t len = ntohl(hdr), have = c->end - c->pos;
    if (len > INT32_MAX)
        return luaL_error(L, "long header: not in the floor");
    if (have >= len) { /* the whole frame is buffered: the small-message path */
        lua_pushlstring(L, c->buf + c->pos, len);
        c->pos += len;
        return 1;
    }
    if (c->big_cap < len) {
        free(c->big ? c->big - 64 : NULL);
        char *p = malloc(len + 128);
        if (p == NULL)
            return luaL_error(L, "out of memory");
        c->big = p + 64; /* away from page offset 0 (SPEC 6) */
        c->big_cap = len;
    }
    memcpy(c->big, c->buf + c->pos, have);
    c->pos = c->end = 0;
    char *p = c->big + have;
    size_t left = len - have;
    while (left > 0) {
        if (left >= BUF_DIRECT) {
            full_read(L, c->fd, p, left);
            break;
        }
        if (buf_fill(L, c) == 0)
            return luaL_error(L, "end of file inside a message");
        size_t k = c->end - c->pos < left ? c->end - c->pos : left;
        memcpy(p, c->buf + c->pos, k);
        c->pos += k;
        p += k;
        left -= k;
    }
    lua_pushlstring(L, c->big, len);
    return 1;
}

static int floor_close(lua_State *L)
{
    floor_conn *c = lua_touserdata(L, 1);
    if (c && c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
        free(c->buf - 64);
        free(c->big ? c->big - 64 : NULL);
        free(c->stage - 64);
        c->buf = c->big = c->stage = NULL;
    }
    return 0;
}

static int new_conn(lua_State *L, int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on Unix sockets */
    floor_conn *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    c->fd = -1;
    char *b = malloc(BUF_CAP + 128), *st = malloc(STAGE_CAP + 128);
    if (b == NULL || st == NULL) {
        free(b);
        free(st);
        close(fd);
        return luaL_error(L, "out of memory");
    }
    c->buf = b + 64; /* away from page offset 0 (SPEC 6) */
    c->stage = st + 64;
    c->fd = fd;
    luaL_setmetatable(L, META);
    return 1;
}

/* listen(spec) -> fd, address */
static int floor_listen(lua_State *L)
{
    const char *spec = luaL_checkstring(L, 1);
    char addr[256];
    int fd;
    if (spec[0] != '/') {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1) != 0 ||
            getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
            return fail(L, "listen");
        snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    } else {
        struct sockaddr_un su = {.sun_family = AF_UNIX};
        snprintf(su.sun_path, sizeof su.sun_path, "%s", spec);
        unlink(su.sun_path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&su, sizeof su) != 0 || listen(fd, 1) != 0)
            return fail(L, "listen");
        snprintf(addr, sizeof addr, "%s", su.sun_path);
    }
    lua_pushinteger(L, fd);
    lua_pushstring(L, addr);
    return 2;
}

/* accept(fd) -> conn */
static int floor_accept(lua_State *L)
{
    int fd;
    do
        fd = accept((int)luaL_checkinteger(L, 1), NULL, NULL);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return fail(L, "accept");
    return new_conn(L, fd);
}

/* connect(address) -> conn */
static int floor_connect(lua_State *L)
{
    const char *addr = luaL_checkstring(L, 1);
    int fd;
    if (addr[0] == '/') {
        struct sockaddr_un su = {.sun_family = AF_UNIX};
        snprintf(su.sun_path, sizeof su.sun_path, "%s", addr);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&su, sizeof su) != 0)
            return fail(L, "connect");
    } else {
        const char *colon = strrchr(addr, ':');
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        sa.sin_port = htons((uint16_t)atoi(colon ? colon + 1 : "0"));
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            return fail(L, "connect");
    }
    return new_conn(L, fd);
}

static int floor_close_fd(lua_State *L)
{
    close((int)luaL_checkinteger(L, 1));
    return 0;
}

static int floor_monotonic(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

int luaopen_lua_floor(lua_State *L);

int luaopen_lua_floor(lua_State *L)
{
    static const luaL_Reg methods[] = {{"send_bytes", floor_send},
                                       {"send_many", floor_send_many},
                                       {"recv_bytes", floor_recv},
                                       {NULL, NULL}};
    static const luaL_Reg funcs[] = {{"listen", floor_listen},     {"accept", floor_accept},
                                     {"connect", floor_connect},   {"close_fd", floor_close_fd},
                                     {"monotonic", floor_monotonic}, {NULL, NULL}};
    luaL_newmetatable(L, META);
    lua_newtable(L); /* __index: the methods, the metatable their upvalue */
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, 1);
    lua_pushcfunction(L, floor_close);
    lua_setfield(L, -2, "close");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, floor_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newlib(L, funcs);
    return 1;
}
