-- LuaRocks: `luarocks --lua-version 5.4 make` in the checkout builds the C
-- core and the SWIG module with CMake (needs cmake, swig, a C compiler and
-- OpenSSL's libcrypto headers) and installs mpconn.lua + mpconn/core.so.
rockspec_format = "3.0"
package = "mpconn"
version = "0.1.0-1"
source = {
  url = "git+https://example.invalid/mpconn.git",
  tag = "v0.1.0",
}
description = {
  summary = "CPython multiprocessing.connection's wire protocol for Lua",
  detailed = [[
    Listeners and connections that exchange length-prefixed messages, with
    the authkey handshake of both CPython dialects, with unmodified CPython
    programs (multiprocessing.connection.Listener / Client), the mpconn
    Python package, and C programs linked with libmpconn.]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    MPCONN_BUILD_TESTS = "OFF",
    MPCONN_BUILD_LUA = "ON",
    MPCONN_BUILD_PYTHON = "OFF",
    MPCONN_BUILD_EXAMPLES = "OFF",
    MPCONN_BUILD_BENCH = "OFF",
    MPCONN_LUA_VERSION = "5.4",
    LUA_INCDIR = "$(LUA_INCDIR)",
    MPCONN_LUA_CMOD_DIR = "$(LIBDIR)",
    MPCONN_LUA_LMOD_DIR = "$(LUADIR)",
    -- The C library, headers and CMake/pkg-config files of the same install
    -- go beside the rock, not into the rock's lib/ that LuaRocks deploys as
    -- Lua modules (its bin/mpconn, the CLI, is deployed as a command).
    CMAKE_INSTALL_LIBDIR = "c/lib",
    CMAKE_INSTALL_INCLUDEDIR = "c/include",
  },
}
