--- mpconn: CPython multiprocessing.connection's wire protocol for Lua 5.4.
--
--   local mpconn = require "mpconn"
--   local l = assert(mpconn.listen("127.0.0.1:0", {authkey = "secret"}))
--   local c = assert(l:accept(5.0))       -- conn, or nil, message, code
--   local msg, err = c:recv_bytes()       -- string, or nil, "closed" at end of file
--   c:send_bytes("reply")                 -- true, or nil, message, code
--
-- This file is the idiomatic layer over the SWIG-built core "mpconn.core"
-- (bindings/lua/mpconn_lua.i and the C files beside it), which it loads; it
-- holds no protocol logic.
--
-- Conventions (as LuaSocket, luv and lzmq):
--   * An expected failure returns nil, message, code.  code is the status
--     name of the C library ("EOF", "TIMEOUT", "AUTH", "OS", "TOOLONG",
--     "PROTO", "TRUNCATED", "RESOLVE", ...).  End of file is
--     nil, "closed", "EOF".  So `assert(conn:send_bytes(s))` works.
--   * Misuse raises: wrong argument types, unknown options, a closed
--     object, receiving on a write-only end or sending on a read-only one.
--   * Strings are binary-safe both ways; integers stay integers.
--   * Durations are seconds (numbers).  nil means "no limit" unless said
--     otherwise; a negative value or math.huge also means no limit.
--   * Objects close themselves when collected (__gc) and when a to-be-closed
--     variable goes out of scope (local c <close> = ...).  close() may be
--     called any number of times.
--   * No globals are created.
--
-- Addresses are strings: "host:port", "[v6]:port", "/path/to.sock",
-- "@abstract-name".  Port 0 binds an ephemeral port; listener.address tells
-- the real one.
--
-- Options (a table, all optional):
--   authkey            string; no key = no handshake ("" is a real, empty key)
--   dialect            "modern" (default), "legacy" (CPython <= 3.11
--                      challenges) or "strict" (modern, refusing MD5)
--   digest             digest named in our challenges ("sha256" default)
--   backlog            listen backlog (integer, default 1)
--   timeout            seconds for connect and for the handshake
--   connect_timeout, handshake_timeout   override timeout for one of them
--   io_timeout         seconds each send/recv may take (default: no limit)
--   max_message_size   largest message recv accepts, in bytes
--   unix_mode          mode bits of a Unix socket file created by listen
--   read_ahead         true: read through a 64 KiB buffer (fewer system
--                      calls for many small messages).  Default false: each
--                      message is read exactly, what follows stays in the
--                      kernel (the descriptor can be shared, handed over
--                      and watched with a raw poll on its fileno).  With
--                      read_ahead, this process must be the only reader and
--                      ask c:poll()/mpconn.wait() for readiness.
--   nonblocking        true: the object is made in non-blocking mode
--                      (as set_timeout(0) right away); connect returns at
--                      once, the connect and the handshake finish in
--                      c:flush() or the connection's first calls.
--   tls                a table (connect and listen only; LuaSec's names):
--                      TLS first, then the authkey handshake and the
--                      messages inside it.
--        certificate   PEM file of our certificate (chain): required by
--                      a listener, a client's for mutual TLS
--        key           PEM file of its private key (default: in certificate)
--        cafile, capath  CAs to verify the peer with (a PEM file, a hashed
--                      directory).  Client: neither = the system's store.
--                      Listener: either makes client certificates required
--        server_name   client: the name the server's certificate must
--                      carry, also sent as SNI (default: the address's host)
--        verify        client: false switches verification of the server
--                      off (explicitly; default true)
--                      Any TLS failure is nil, message, "TLS" (OpenSSL's
--                      reason: "certificate verify failed: ...", "wrong
--                      version number" for a plaintext peer, ...).
--
-- Non-blocking mode (SPEC 8; lua/README.md "Event loops"): obj:set_timeout(0)
-- on a connection or listener.  A call that would wait returns
-- nil, "wantread", "AGAIN" or nil, "wantwrite", "AGAIN" (LuaSec's strings)
-- having lost nothing, and is simply called again once obj:pollfd() is
-- ready for obj:events().  Every object is a cqueues pollable (pollfd,
-- events, timeout); c:pending() is true while a whole message is buffered
-- (receive it before waiting on the descriptor).  mpconn.cqueues wraps all
-- this for cqueues coroutines.
--
-- recv_bytes_into is not offered: Lua strings are immutable, so there is no
-- caller buffer to receive into; recv_bytes(maxlength) bounds the size.
--
-- SIGPIPE: writing to a one-way pipe (mpconn.pipe(false)) whose reader is
-- gone returns nil, message, "OS" (EPIPE), as a socket does.  The C library
-- never raises SIGPIPE (SPEC 11: sockets use MSG_NOSIGNAL, pipe writes block
-- it around the write when it would kill the process), so the stand-alone
-- lua interpreter, whose default action for it is to die, lives on.  No
-- signal disposition is changed.

local core = require "mpconn.core"

local type, error, setmetatable, getmetatable, tostring, pairs =
  type, error, setmetatable, getmetatable, tostring, pairs
local math_type, math_ceil, huge = math.type, math.ceil, math.huge
local format = string.format

local c_poll, c_wait = core.mpc_poll, core.wait
local c_errmsg, c_conn_close = core.mpc_conn_errmsg, core.conn_close

local M = {
  _VERSION = core.mpc_version(),
  --- The compiled core (the C API as SWIG wraps it), for advanced use.
  core = core,
}

---------------------------------------------------------------------------
-- Status codes
---------------------------------------------------------------------------
local OK, EOF, AGAIN = core.MPC_OK, core.MPC_EOF, core.MPC_AGAIN
local WANT_READ, WANT_WRITE = core.MPC_WANT_READ, core.MPC_WANT_WRITE
local c_wants = core.mpc_conn_wants
local NAMES = {}
setmetatable(NAMES, { __index = function(t, st)
  local name = core.mpc_status_name(st)
  t[st] = name
  return name
end })

-- Statuses that mean the caller misused the object: raised, not returned.
local MISUSE = {
  [core.MPC_CLOSED] = true, [core.MPC_INVAL] = true,
  [core.MPC_NOTREADABLE] = true, [core.MPC_NOTWRITABLE] = true,
}

--- Status name -> number, e.g. mpconn.status.EOF == 1.
M.status = {}
for st = 0, 63 do
  local name = core.mpc_status_name(st)
  if name == "UNKNOWN" then break end
  M.status[name] = st
end

---------------------------------------------------------------------------
-- Argument helpers
---------------------------------------------------------------------------
local function argerror(n, fname, msg, level)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), (level or 2) + 1)
end

local MS_MAX = 2 ^ 53

-- Seconds (number) -> milliseconds (integer).  nil -> default; negative,
-- math.huge -> -1 (no limit); a positive value never rounds down to 0.
local function to_ms(t, n, fname, default)
  if t == nil then return default end
  if type(t) ~= "number" then
    argerror(n, fname, "number of seconds expected, got " .. type(t), 3)
  end
  if t ~= t then argerror(n, fname, "timeout is NaN", 3) end
  if t < 0 or t == huge then return -1 end
  local ms = t * 1000
  if ms >= MS_MAX then return -1 end
  ms = math_ceil(ms)
  return ms
end

local DIALECTS = {
  modern = core.MPC_DIALECT_MODERN,
  legacy = core.MPC_DIALECT_LEGACY,
  strict = core.MPC_DIALECT_STRICT,
}

local OPTION_KEYS = {
  authkey = true, dialect = true, digest = true, backlog = true, timeout = true,
  connect_timeout = true, handshake_timeout = true, io_timeout = true,
  max_message_size = true, unix_mode = true, read_ahead = true, nonblocking = true,
  tls = true,
}

-- The keys of the tls table (LuaSec's names) and what each must be.
local TLS_KEYS = {
  certificate = "string", key = "string", cafile = "string", capath = "string",
  server_name = "string", verify = "boolean",
}

-- opts.tls -> the table of mpc_tls_options field names the core reads.
local function c_tls(t, fname)
  if fname ~= "connect" and fname ~= "listen" then
    error(format("option tls to '%s': TLS is for connect and listen only", fname), 4)
  end
  if type(t) ~= "table" then
    error(format("option tls to '%s': table expected, got %s", fname, type(t)), 4)
  end
  local o = {}
  for k, v in pairs(t) do
    local want = TLS_KEYS[k]
    if not want then error(format("unknown option tls.%s to '%s'", tostring(k), fname), 4) end
    if type(v) ~= want then
      error(format("option tls.%s to '%s': %s expected, got %s", k, fname, want, type(v)), 4)
    end
    if want == "string" and v:find("\0", 1, true) then
      error(format("option tls.%s to '%s': the string contains a zero byte", k, fname), 4)
    end
    if k == "verify" then o.no_verify = not v else o[k] = v end
  end
  return o
end

local function opt_ms(v, key, fname)
  if v == nil then return nil end
  if type(v) ~= "number" or v ~= v then
    error(format("option %s to '%s': number of seconds expected, got %s", key, fname, type(v)), 4)
  end
  if v < 0 or v == huge then return -1 end
  local ms = math_ceil(v * 1000)
  if ms == 0 then ms = 1 end -- 0 would mean "the default" to the C library
  if ms >= MS_MAX then return -1 end
  return ms
end

local function opt_int(v, key, fname)
  if v == nil then return nil end
  if math_type(v) ~= "integer" or v < 0 then
    error(format("option %s to '%s': non-negative integer expected, got %s", key, fname,
      math_type(v) or type(v)), 4)
  end
  return v
end

-- The user's options table -> the table of C field names the core reads.
local function c_options(opts, n, fname)
  if opts == nil then return nil end
  if type(opts) ~= "table" then argerror(n, fname, "options table expected, got " .. type(opts), 3) end
  for k in pairs(opts) do
    if not OPTION_KEYS[k] then error(format("unknown option '%s' to '%s'", tostring(k), fname), 3) end
  end
  local o = {}
  local key = opts.authkey
  if key ~= nil and type(key) ~= "string" then
    error(format("option authkey to '%s': string expected, got %s", fname, type(key)), 3)
  end
  o.authkey = key
  local d = opts.dialect
  if d ~= nil then
    o.dialect = DIALECTS[d]
    if not o.dialect then
      error(format("option dialect to '%s': \"modern\", \"legacy\" or \"strict\" expected, got %s",
        fname, tostring(d)), 3)
    end
  end
  if opts.digest ~= nil and type(opts.digest) ~= "string" then
    error(format("option digest to '%s': string expected, got %s", fname, type(opts.digest)), 3)
  end
  if opts.digest ~= nil then
    -- The core's own check (a challenge with that digest), now rather than
    -- at every client (a listener would else drop them all).
    local st = core.mpc_hs_challenge(o.dialect or DIALECTS.modern, opts.digest, string.rep("\0", 40))
    if st ~= OK then
      error(format("option digest to '%s': unknown or refused digest %q", fname, opts.digest), 3)
    end
  end
  o.digest = opts.digest
  o.backlog = opt_int(opts.backlog, "backlog", fname)
  o.max_message_size = opt_int(opts.max_message_size, "max_message_size", fname)
  o.unix_mode = opt_int(opts.unix_mode, "unix_mode", fname)
  local t = opt_ms(opts.timeout, "timeout", fname)
  o.connect_timeout = opt_ms(opts.connect_timeout, "connect_timeout", fname) or t
  o.handshake_timeout = opt_ms(opts.handshake_timeout, "handshake_timeout", fname) or t
  o.io_timeout = opt_ms(opts.io_timeout, "io_timeout", fname)
  local ra = opts.read_ahead
  if ra ~= nil and type(ra) ~= "boolean" then
    error(format("option read_ahead to '%s': boolean expected, got %s", fname, type(ra)), 3)
  end
  o.read_ahead = ra and 1 or nil
  local nb = opts.nonblocking
  if nb ~= nil and type(nb) ~= "boolean" then
    error(format("option nonblocking to '%s': boolean expected, got %s", fname, type(nb)), 3)
  end
  o.nonblocking = nb and 1 or nil
  if opts.tls ~= nil then o.tls = c_tls(opts.tls, fname) end
  return o
end

---------------------------------------------------------------------------
-- Connection
---------------------------------------------------------------------------
local Connection = {}
local Conn_mt = {
  __name = "mpconn.Connection",
  __index = Connection,
}

-- A connection is a table holding its handle at [1] (nil once closed): a
-- userdata of the compiled core's own ("mpconn.conn", bindings/lua/mpcl.h).  The
-- per-message methods are also set on each table: found there, they skip a
-- metatable lookup per call.
local fast -- the C methods, set below

local values -- the C value closures, set below

local function wrap_conn(h)
  return setmetatable({ h, send_bytes = fast.send_bytes, send_many = fast.send_many,
    recv_bytes = fast.recv_bytes, send = values.send, recv = values.recv }, Conn_mt)
end

-- Raises the right error for a method called on something without a live
-- handle.  extra: frames between the method and its caller (1 for the
-- argument checks the C methods call).
local function dead(self, what, extra)
  local level = 3 + (extra or 0)
  if getmetatable(self) ~= Conn_mt then
    error(format("bad self to '%s' (mpconn connection expected, got %s)", what, type(self)), level)
  end
  error(format("%s: connection is closed", what), level)
end

-- The live handle of a connection, or raises (closed, or not a connection).
-- extra: as for dead.
local function handle(self, what, extra)
  local h = type(self) == "table" and rawget(self, 1)
  if not h then dead(self, what, (extra or 0) + 1) end
  return h
end

-- nil, message, code for an expected failure of a call on h; raises misuse.
-- msg: the connection's message, when the caller already read it (the C
-- methods do, before anything can close h).
-- MPC_AGAIN (non-blocking mode): nil, "wantread" or "wantwrite", "AGAIN".
-- The string names what the call itself waits for: "wantwrite" only when
-- the connection waits for writability alone (a send behind queued
-- output, a connect, a handshake step that writes); a receive, which also
-- wants writability while output is queued, says "wantread".  events()
-- gives the whole set ("rw" then): poll with events(), not the string.
local function want_string(h)
  local w = c_wants(h)
  if w & WANT_READ == 0 and w & WANT_WRITE ~= 0 then return "wantwrite" end
  return "wantread"
end

local function conn_fail(h, st, level, msg)
  if st == EOF then return nil, "closed", "EOF" end
  if st == AGAIN then return nil, want_string(h), "AGAIN" end
  if msg == nil then msg = c_errmsg(h) end
  if msg == nil or msg == "" then msg = core.mpc_strerror(st) end
  if MISUSE[st] then error(msg, (level or 2) + 1) end
  return nil, msg, NAMES[st]
end

-- send_bytes, send_many and recv_bytes run once per message, so they are C
-- functions (core.conn_methods, bindings/lua/mpcl_conn.c) that do the I/O
-- themselves.  They check the common case only and call the functions below
-- for everything else: these raise on misuse (called from C, so their error
-- levels count one frame more) and return the normalised argument.  A
-- failed call goes through conn_fail, as for every other method.

--- conn:send_bytes(s [, i [, j]]) -> true | nil, message, code
-- Sends s (or s:sub(i, j), with string.sub's rules) as one message.
local function send_bytes_args(self, s, i, j)
  if getmetatable(self) ~= Conn_mt or not self[1] then dead(self, "send_bytes", 1) end
  if type(s) ~= "string" then argerror(1, "send_bytes", "string expected, got " .. type(s), 3) end
  if i ~= nil or j ~= nil then s = s:sub(i or 1, j or -1) end
  return s
end

--- conn:send_many({s1, s2, ...}) -> true | nil, message, code
-- Sends each string as its own message, with as few system calls as the
-- kernel allows; the bytes on the wire equal one send_bytes per string.
-- A list entry that is not a string raises before anything is sent.
local function send_many_args(self, list)
  if getmetatable(self) ~= Conn_mt or not self[1] then dead(self, "send_many", 1) end
  if type(list) ~= "table" then
    argerror(1, "send_many", "table of strings expected, got " .. type(list), 3)
  end
  return list
end

--- conn:recv_bytes([maxlength]) -> string | nil, message, code
-- Receives one whole message.  A message longer than maxlength gives
-- nil, message, "TOOLONG" and (as CPython) leaves the connection unreadable.
local function recv_bytes_args(self, maxlength)
  if getmetatable(self) ~= Conn_mt or not self[1] then dead(self, "recv_bytes", 1) end
  if maxlength == nil then return -1 end
  if math_type(maxlength) ~= "integer" or maxlength < 0 then
    argerror(1, "recv_bytes", "non-negative integer expected, got "
      .. (math_type(maxlength) or type(maxlength)), 3)
  end
  return maxlength
end

fast = core.conn_methods({
  send_bytes = send_bytes_args, send_many = send_many_args, recv_bytes = recv_bytes_args,
  fail = conn_fail,
})
Connection.send_bytes = fast.send_bytes
Connection.send_many = fast.send_many
Connection.recv_bytes = fast.recv_bytes
-- Bytes held by recv_bytes's staging buffer (one per Lua state, for
-- messages of 1 KiB to 4 MiB; see lua/README.md "Speed and memory"); for
-- tests.
M._recv_buffer_size = fast.stage_size

---------------------------------------------------------------------------
-- Values: conn:send(v), conn:recv(), mpconn.encode/decode/repr
---------------------------------------------------------------------------
-- Lua values travel as pickles of plain Python values, converted in C
-- (bindings/lua/mpcl_values.c).  lua/README.md "Values" has the mapping and
-- every rule; in short:
--   nil (top level) / mpconn.null <-> None;  booleans <-> bool;
--   integers <-> int (beyond 64 bits: mpconn.bigint "decimal text");
--   floats <-> float;  strings -> str if valid UTF-8, else bytes;
--   str -> string;  bytes, bytearray -> string (or, with {bytes = "marked"},
--   mpconn.bytes / mpconn.bytearray values);
--   tables with exactly the keys 1..n (n >= 1) and mpconn.list{} -> list;
--   mpconn.tuple{} -> tuple; list/tuple -> mpconn.list tables (tuples
--   marked mpconn.tuple with {tuple = "marked"}, and always inside keys);
--   mpconn.set{...}/mpconn.frozenset{...} <-> set/frozenset ({item = true});
--   every other table, and {} -> dict (keys sorted: numbers, strings, bytes,
--   booleans, the rest), mpconn.dict(t, order) with an explicit key order;
--   dict -> plain table (with {ordered = true}: marked with its key order).
-- Sending raises for what cannot be sent (functions, unhashable
-- keys, ...): nothing was sent then.  Receiving a pickle that is refused
-- (it would run code) returns nil, message, "VALUE" and the connection
-- stays usable.

local MARKS -- metatable -> kind name, for mpconn.kind

-- The options of send and encode (a table or nil), checked, packed as
-- protocol + 256 * max_depth (0: the default).
local function send_options(opts, fname, level)
  local protocol, depth = 4, 0
  if opts == nil then return protocol end
  for k in pairs(opts) do
    if k ~= "protocol" and k ~= "max_depth" then
      error(format("unknown option '%s' to '%s'", tostring(k), fname), level)
    end
  end
  protocol = opts.protocol or 4
  if math_type(protocol) ~= "integer" or protocol < 2 or protocol > 5 then
    error(format("option protocol to '%s': 2, 3, 4 or 5 expected, got %s", fname, tostring(protocol)), level)
  end
  depth = opts.max_depth or 0
  if math_type(depth) ~= "integer" or depth < 0 or depth > values.DEPTH_MAX then
    error(format("option max_depth to '%s': integer 1..%d expected", fname, values.DEPTH_MAX), level)
  end
  return protocol + depth * 256
end

local function send_prep(self, opts, nargs)
  if getmetatable(self) ~= Conn_mt or not self[1] then dead(self, "send", 1) end
  if nargs < 1 then argerror(1, "send", "value expected", 3) end
  if opts ~= nil and type(opts) ~= "table" then
    argerror(2, "send", "options table expected, got " .. type(opts), 3)
  end
  return send_options(opts, "send", 4)
end

local PY2_STR = { ascii = 0, bytes = 1, latin1 = 2 }

local function recv_flags(opts, fname, level)
  if opts == nil then return 3 << values.R_PY2_SHIFT end
  if type(opts) ~= "table" then
    error(format("bad argument #1 to '%s' (options table expected, got %s)", fname, type(opts)), level)
  end
  local flags = 0
  for k, v in pairs(opts) do
    if k == "bytes" then
      if v == "marked" then flags = flags | values.R_BYTES_MARKED
      elseif v ~= "string" then
        error(format("option bytes to '%s': \"string\" or \"marked\" expected", fname), level)
      end
    elseif k == "tuple" then
      if v == "marked" then flags = flags | values.R_TUPLE_MARKED
      elseif v ~= "list" then
        error(format("option tuple to '%s': \"list\" or \"marked\" expected", fname), level)
      end
    elseif k == "ordered" then
      if type(v) ~= "boolean" then error(format("option ordered to '%s': boolean expected", fname), level) end
      if v then flags = flags | values.R_ORDERED end
    elseif k == "py2_str" then
      if not PY2_STR[v] then
        error(format("option py2_str to '%s': \"bytes\", \"ascii\" or \"latin1\" expected", fname), level)
      end
    elseif k == "max_depth" then
      if math_type(v) ~= "integer" or v < 1 or v > values.DEPTH_MAX then
        error(format("option max_depth to '%s': integer 1..%d expected", fname, values.DEPTH_MAX), level)
      end
      flags = flags | (v << values.R_DEPTH_SHIFT)
    else
      error(format("unknown option '%s' to '%s'", tostring(k), fname), level)
    end
  end
  return flags | ((opts.py2_str and PY2_STR[opts.py2_str] or 3) << values.R_PY2_SHIFT)
end

local function recv_prep(self, opts, nargs)
  if getmetatable(self) ~= Conn_mt or not self[1] then dead(self, "recv", 1) end
  return recv_flags(opts, "recv", 4)
end

values = core.value_setup({ fail = conn_fail, send_prep = send_prep, recv_prep = recv_prep })

--- conn:send(v [, opts]) -> true | nil, message, code
-- Sends v as one pickled message, as Python's Connection.send(obj).  opts:
-- protocol (2, 3, 4 or 5; default 4; 2 for Python 2.7 peers), max_depth
-- (default 1000).  Raises if v cannot be sent as a Python value.
Connection.send = values.send

--- conn:recv([opts]) -> value | nil, message, code
-- Receives one pickled message, as Python's Connection.recv(), but safely:
-- a pickle that would call anything gives nil, message, "VALUE" (the
-- message names the opcode, the global and the offset) and the connection
-- stays usable.  A None message returns a single nil: tell it from a
-- failure by the second result.  opts: bytes ("string" default, "marked"),
-- tuple ("list" default, "marked"), ordered (false; true: dicts remember
-- their key order), py2_str ("bytes" default, "ascii", "latin1": Python 2
-- str), max_depth (default 1000).
Connection.recv = values.recv

--- mpconn.null: None inside tables (a unique userdata; tostring "mpconn.null").
M.null = values.null
getmetatable(values.null).__tostring = function() return "mpconn.null" end
getmetatable(values.null).__metatable = "mpconn.null"

local META = values.meta
MARKS = {}
for name, mt in pairs(META) do MARKS[mt] = name end

-- Marked scalars: {value = s}; tostring gives s, # its length, == compares.
for _, name in ipairs({ "bytes", "bytearray", "bigint" }) do
  local mt = META[name]
  mt.__tostring = function(b) return b.value end
  mt.__len = function(b) return #b.value end
  mt.__eq = function(a, b) return getmetatable(a) == getmetatable(b) and a.value == b.value end
end

-- mark(t, mt, fname): sets a marking metatable on t (a new table if nil).
local function mark(t, mt, fname, what)
  if t == nil then t = {} end
  if type(t) ~= "table" then argerror(1, fname, (what or "table") .. " expected, got " .. type(t), 3) end
  local old = getmetatable(t)
  if old ~= nil and old ~= mt and not MARKS[old] and not (type(old) == "table" and rawget(old, "__order")) then
    argerror(1, fname, "the table already has a metatable", 3)
  end
  return setmetatable(t, mt)
end

--- mpconn.list([t]) -> t, marked as a list (sent as t[1]..t[#t]; an empty
-- one stays a list).  mpconn.tuple([t]) likewise for a tuple.  Both mark t
-- in place and return it.
function M.list(t) return mark(t, META.list, "list") end
function M.tuple(t) return mark(t, META.tuple, "tuple") end

--- mpconn.dict([t [, order]]) -> t, marked as a dict (an empty one stays a
-- dict, {1, 2} becomes {1: 1, 2: 2}).  order: a list of keys sent first,
-- in that order (keys it lists that t lacks are skipped); the other keys
-- follow, sorted.
function M.dict(t, order)
  if order == nil then return mark(t, META.dict, "dict") end
  if type(order) ~= "table" then argerror(2, "dict", "list of keys expected, got " .. type(order)) end
  local mt = {}
  for k, v in pairs(META.dict) do mt[k] = v end
  mt.__order = order
  return mark(t, mt, "dict")
end

--- mpconn.set(items), mpconn.frozenset(items) -> a new table {item = true}
-- for each item of the list items, marked as a set / frozenset.
local function make_set(items, mt, fname)
  if items ~= nil and type(items) ~= "table" then argerror(1, fname, "list expected, got " .. type(items), 3) end
  local s = {}
  if items then
    for i = 1, #items do
      local v = items[i]
      if v == nil then v = M.null end
      s[v] = true
    end
  end
  return setmetatable(s, mt)
end
function M.set(items) return make_set(items, META.set, "set") end
function M.frozenset(items) return make_set(items, META.frozenset, "frozenset") end

--- mpconn.bytes(s), mpconn.bytearray(s) -> a value sent as bytes /
-- bytearray whatever s holds.  b.value is s, tostring(b) too.
function M.bytes(s)
  if type(s) ~= "string" then argerror(1, "bytes", "string expected, got " .. type(s)) end
  return setmetatable({ value = s }, META.bytes)
end
function M.bytearray(s)
  if s == nil then s = "" end
  if type(s) ~= "string" then argerror(1, "bytearray", "string expected, got " .. type(s)) end
  return setmetatable({ value = s }, META.bytearray)
end

--- mpconn.bigint(text) -> an int of any size, from its decimal text (how
-- a received int beyond 64 bits arrives: b.value is the text).
function M.bigint(text)
  if type(text) == "number" and math_type(text) == "integer" then text = tostring(text) end
  if type(text) ~= "string" or not text:find("^[-+]?%d+$") or #text > 4301 then
    argerror(1, "bigint", "decimal text \"[-+]digits\" expected")
  end
  return setmetatable({ value = text }, META.bigint)
end

--- mpconn.kind(v) -> "null", "list", "tuple", "dict", "set", "frozenset",
-- "bytes", "bytearray", "bigint" for a marked value, else nil.
function M.kind(v)
  if v == M.null then return "null" end
  if type(v) ~= "table" then return nil end
  local mt = getmetatable(v)
  if mt == nil then return nil end
  if MARKS[mt] then return MARKS[mt] end
  if type(mt) == "table" and rawget(mt, "__order") and rawget(mt, "__mpconn") == values.kinds.dict then
    return "dict"
  end
  return nil
end

--- mpconn.order(t) -> the key order of a dict marked with one (from
-- mpconn.dict(t, order) or recv{ordered = true}), else nil.
function M.order(t)
  local mt = type(t) == "table" and getmetatable(t)
  return type(mt) == "table" and rawget(mt, "__order") or nil
end

--- mpconn.encode(v [, opts]) -> the pickle conn:send(v, opts) would send.
function M.encode(v, opts)
  if opts ~= nil and type(opts) ~= "table" then argerror(2, "encode", "options table expected") end
  local packed = send_options(opts, "encode", 3)
  return values.encode(v, packed & 0xff, packed >> 8)
end

--- mpconn.decode(pickle [, opts]) -> value | nil, message, "VALUE"
-- What conn:recv(opts) returns for a message holding pickle.
function M.decode(s, opts)
  if type(s) ~= "string" then argerror(1, "decode", "string expected, got " .. type(s)) end
  return values.decode(s, recv_flags(opts, "decode", 3))
end

--- mpconn.repr(v [, max_len]) -> the text Python's repr() prints for the
-- value v is sent as (nil, message, "VALUE" if longer than max_len bytes).
function M.repr(v, max_len)
  if max_len ~= nil and math_type(max_len) ~= "integer" then argerror(2, "repr", "integer expected") end
  return values.repr(v, max_len or -1)
end

--- Not offered; raises with the reason.
function Connection:recv_bytes_into()
  error("recv_bytes_into is not offered in Lua: strings are immutable, so there is no buffer "
    .. "to receive into; use recv_bytes([maxlength])", 2)
end

--- conn:poll([timeout]) -> boolean | nil, message, code
-- True if a message (or end of file) is waiting; waits up to timeout
-- seconds (default 0: check once without blocking).
function Connection:poll(timeout)
  local h = handle(self, "poll")
  local st, ready = c_poll(h, to_ms(timeout, 1, "poll", 0))
  if st == OK then return ready end
  return conn_fail(h, st)
end

--- conn:fileno() -> integer
function Connection:fileno()
  local h = handle(self, "fileno")
  return core.mpc_conn_fileno(h)
end

--- conn:close(): closes the connection; later calls do nothing.
function Connection:close()
  local h = type(self) == "table" and rawget(self, 1)
  if h then
    self[1] = nil
    c_conn_close(h)
  elseif getmetatable(self) ~= Conn_mt then
    dead(self, "close")
  end
end

--- conn:is_closed(), conn:is_readable(), conn:is_writable() -> boolean
function Connection:is_closed()
  if getmetatable(self) ~= Conn_mt then dead(self, "is_closed") end
  return rawget(self, 1) == nil
end
function Connection:is_readable()
  local h = handle(self, "is_readable")
  return core.mpc_conn_readable(h) ~= 0
end
function Connection:is_writable()
  local h = handle(self, "is_writable")
  return core.mpc_conn_writable(h) ~= 0
end

--- conn:peer() -> string: "host:port" for TCP, "" for Unix sockets and pipes.
function Connection:peer()
  local h = handle(self, "peer")
  return core.mpc_conn_peer(h)
end

--- conn:buffered() -> integer: bytes read from the socket, not yet returned.
function Connection:buffered()
  local h = handle(self, "buffered")
  return core.mpc_conn_buffered(h)
end

--- conn:set_timeout(seconds | nil): deadline of each send/recv (nil, a
-- negative number or math.huge: none), in blocking mode.  0: non-blocking
-- mode (calls that would wait return nil, "wantread"/"wantwrite", "AGAIN").
-- Leaving non-blocking mode while a connect, a handshake, queued output or
-- a partly received message is in progress raises: finish it first
-- (c:flush(), the receive).
function Connection:set_timeout(t)
  handle(self, "set_timeout")
  if t == 0 then
    local h = handle(self, "set_timeout")
    local st = core.mpc_conn_set_blocking(h, 0)
    if st ~= OK then error(c_errmsg(h) or core.mpc_strerror(st), 2) end
    return
  end
  local ms = to_ms(t, 1, "set_timeout", -1)
  local h = handle(self, "set_timeout")
  if core.mpc_conn_blocking(h) == 0 then
    local st = core.mpc_conn_set_blocking(h, 1)
    if st ~= OK then error("set_timeout: " .. (c_errmsg(h) or core.mpc_strerror(st)), 2) end
  end
  core.mpc_conn_set_timeout(h, ms)
end

--- conn:pollfd() -> the descriptor to poll (cqueues' pollable protocol;
-- the same as fileno()).
function Connection:pollfd()
  return core.mpc_conn_fileno(handle(self, "pollfd"))
end

--- conn:events() -> "r", "w" or "rw": what the pending operation waits for
-- (a connect, a handshake step, queued output, a receive), as cqueues'
-- pollable protocol and luv's poll:start take it.  "r" when nothing is in
-- progress (the next event is a message).
local EVENTS = { [0] = "r", [WANT_READ] = "r", [WANT_WRITE] = "w", [WANT_READ | WANT_WRITE] = "rw" }
function Connection:events()
  return EVENTS[c_wants(handle(self, "events"))]
end

--- conn:timeout() -> nil: a plain connection holds no deadline between
-- calls (cqueues' pollable protocol; mpconn.cqueues objects return the
-- seconds left of the call in progress).
function Connection:timeout()
  handle(self, "timeout")
  return nil
end

--- conn:pending() -> boolean: a whole message is already buffered, so the
-- next receive will not wait (never a system call).  An event loop must
-- receive it before waiting on the descriptor, which may stay silent.
function Connection:pending()
  return core.mpc_conn_pending(handle(self, "pending")) ~= 0
end

--- conn:flush() -> true | nil, "wantread"/"wantwrite", "AGAIN" | nil, message, code
-- Non-blocking mode: goes on with what is in progress (a connect, the
-- handshake, queued output); true when nothing is left.  A failed connect
-- or handshake is reported here (code "OS", "AUTH", ...).  Blocking mode:
-- true at once.
function Connection:flush()
  local h = handle(self, "flush")
  local st = core.mpc_flush(h)
  if st == OK then return true end
  return conn_fail(h, st)
end

--- conn:is_blocking() -> false after set_timeout(0) (or the nonblocking
-- option), else true.
function Connection:is_blocking()
  return core.mpc_conn_blocking(handle(self, "is_blocking")) ~= 0
end

--- conn:detach() -> fd: forgets the connection without closing its
-- descriptor (the caller owns the fd).
function Connection:detach()
  local h = handle(self, "detach")
  self[1] = nil
  return core.conn_detach(h)
end

--- conn:deliver_challenge(key [, opts]), conn:answer_challenge(key [, opts])
-- -> true | nil, message, code: the handshake legs, for connections made
-- without an authkey (e.g. from mpconn.pipe()).
function Connection:deliver_challenge(key, opts)
  handle(self, "deliver_challenge")
  if type(key) ~= "string" then argerror(1, "deliver_challenge", "string expected, got " .. type(key)) end
  local o = c_options(opts, 2, "deliver_challenge")
  -- Read again after c_options allocated (a finalizer may have closed it).
  local h = handle(self, "deliver_challenge")
  local st = core.mpc_conn_deliver_challenge(h, key, o)
  if st == OK then return true end
  return conn_fail(h, st)
end
function Connection:answer_challenge(key, opts)
  handle(self, "answer_challenge")
  if type(key) ~= "string" then argerror(1, "answer_challenge", "string expected, got " .. type(key)) end
  local o = c_options(opts, 2, "answer_challenge")
  -- Read again after c_options allocated (a finalizer may have closed it).
  local h = handle(self, "answer_challenge")
  local st = core.mpc_conn_answer_challenge(h, key, o)
  if st == OK then return true end
  return conn_fail(h, st)
end

local function conn_gc(self)
  local h = rawget(self, 1)
  if h then
    self[1] = nil
    c_conn_close(h)
  end
end
Conn_mt.__gc = conn_gc
Conn_mt.__close = conn_gc
Conn_mt.__tostring = function(self)
  local h = rawget(self, 1)
  if not h then return "mpconn.Connection (closed)" end
  return format("mpconn.Connection (fd %d)", core.mpc_conn_fileno(h))
end

---------------------------------------------------------------------------
-- Listener
---------------------------------------------------------------------------
local Listener = {}
local Listener_mt = {
  __name = "mpconn.Listener",
  __index = Listener,
}

local function listener_handle(self, what)
  local h = type(self) == "table" and rawget(self, "_listener")
  if h then return h end
  if getmetatable(self) ~= Listener_mt then
    error(format("bad self to '%s' (mpconn listener expected, got %s)", what, type(self)), 3)
  end
  error(format("%s: listener is closed", what), 3)
end

--- listener:accept([timeout]) -> conn | nil, message, code
-- Waits up to timeout seconds (nil: no limit) for a client and runs the
-- handshake if the listener has an authkey.  A failed handshake returns
-- nil, message, "AUTH" (or "TIMEOUT", "EOF", ...); the listener stays usable.
-- Non-blocking mode (set_timeout(0)): nil, "wantread", "AGAIN" while no
-- client waits, else at once a non-blocking connection whose handshake
-- finishes in its c:flush() or its first calls (where a wrong key then
-- shows: nil, message, "AUTH"); the listener never waits on one client.
function Listener:accept(timeout)
  local h = listener_handle(self, "accept")
  local ms = to_ms(timeout, 1, "accept", nil)
  if ms == nil then ms = rawget(self, "_timeout") or -1 end
  local st, c, msg = core.mpc_listener_accept(h, ms)
  if st == OK then return wrap_conn(c) end
  if st == AGAIN then return nil, "wantread", "AGAIN" end
  if MISUSE[st] then error(msg, 2) end
  if msg == nil or msg == "" then msg = core.mpc_strerror(st) end
  return nil, msg, NAMES[st]
end

--- listener:fileno() -> integer
function Listener:fileno()
  return core.mpc_listener_fileno(listener_handle(self, "fileno"))
end

--- listener:set_timeout(seconds | nil): the default timeout of accept()
-- (nil, a negative number, math.huge: none).  0: non-blocking mode (accept
-- returns nil, "wantread", "AGAIN" when no client waits).
function Listener:set_timeout(t)
  local h = listener_handle(self, "set_timeout")
  local ms = to_ms(t, 1, "set_timeout", -1)
  if t == 0 then
    core.mpc_listener_set_blocking(h, 0)
    self._timeout = nil
    self._nonblocking = true
  else
    core.mpc_listener_set_blocking(h, 1)
    self._timeout = ms >= 0 and ms or nil
    self._nonblocking = nil
  end
end

--- listener:pollfd(), listener:events() ("r"), listener:timeout() (nil):
-- cqueues' pollable protocol.
function Listener:pollfd()
  return core.mpc_listener_fileno(listener_handle(self, "pollfd"))
end
function Listener:events()
  listener_handle(self, "events")
  return "r"
end
function Listener:timeout()
  listener_handle(self, "timeout")
  return nil
end

--- listener:is_blocking() -> false after set_timeout(0) or the nonblocking option.
function Listener:is_blocking()
  listener_handle(self, "is_blocking")
  return not self._nonblocking
end

--- listener:close(): closes the socket (and removes its Unix socket file);
-- later calls do nothing.  listener.address stays readable.
function Listener:close()
  local h = type(self) == "table" and rawget(self, "_listener")
  if h then
    self._listener = nil
    core.listener_close(h)
  elseif getmetatable(self) ~= Listener_mt then
    listener_handle(self, "close")
  end
end

function Listener:is_closed()
  if getmetatable(self) ~= Listener_mt then listener_handle(self, "is_closed") end
  return self._listener == nil
end

local function listener_gc(self)
  local h = rawget(self, "_listener")
  if h then
    self._listener = nil
    core.listener_close(h)
  end
end
Listener_mt.__gc = listener_gc
Listener_mt.__close = listener_gc
Listener_mt.__tostring = function(self)
  if not rawget(self, "_listener") then return format("mpconn.Listener (closed, %s)", self.address) end
  return format("mpconn.Listener (%s)", self.address)
end

---------------------------------------------------------------------------
-- Module functions
---------------------------------------------------------------------------

--- mpconn.listen(address [, opts]) -> listener | nil, message, code
-- listener.address is the bound address (with the real port);
-- listener.family is "AF_INET", "AF_INET6" or "AF_UNIX".
function M.listen(address, opts)
  if type(address) ~= "string" then argerror(1, "listen", "address string expected, got " .. type(address)) end
  if address:find("\0", 1, true) then argerror(1, "listen", "the address contains a zero byte") end
  local st, h, msg = core.mpc_listen(address, c_options(opts, 2, "listen"))
  if st ~= OK then
    if st == core.MPC_INVAL then error(msg, 2) end
    return nil, msg, NAMES[st]
  end
  return setmetatable({
    _listener = h,
    address = core.mpc_listener_address(h),
    family = core.mpc_listener_family(h),
    _nonblocking = opts and opts.nonblocking or nil,
  }, Listener_mt)
end

--- mpconn.connect(address [, opts]) -> conn | nil, message, code
-- Connects, then runs the handshake if opts.authkey is set.  A refused
-- connection is nil, "connect to ...: Connection refused", "OS"; a wrong
-- key is nil, message, "AUTH".
function M.connect(address, opts)
  if type(address) ~= "string" then argerror(1, "connect", "address string expected, got " .. type(address)) end
  if address:find("\0", 1, true) then argerror(1, "connect", "the address contains a zero byte") end
  local st, h, msg = core.mpc_connect(address, c_options(opts, 2, "connect"))
  if st == OK then return wrap_conn(h) end
  if st == core.MPC_INVAL then error(msg, 2) end
  return nil, msg, NAMES[st]
end

--- mpconn.pipe([duplex [, opts]]) -> a, b | nil, message, code
-- duplex (default true): a connected socket pair.  duplex == false: a is
-- the reading end, b the writing end (as CPython's Pipe(duplex=False)).
-- opts may set io_timeout, max_message_size and read_ahead.
function M.pipe(duplex, opts)
  if duplex ~= nil and type(duplex) ~= "boolean" then
    argerror(1, "pipe", "boolean expected, got " .. type(duplex))
  end
  local st, a, b, msg = core.mpc_pipe(duplex == false and 0 or 1, c_options(opts, 2, "pipe"))
  if st ~= OK then return nil, msg, NAMES[st] end
  return wrap_conn(a), wrap_conn(b)
end

--- mpconn.wait(conns [, timeout]) -> list | nil, message, code
-- Waits up to timeout seconds (nil: no limit) until at least one of the
-- connections has a message (or end of file) waiting, and returns those
-- connections, in the order given; an empty list when the time ran out.
function M.wait(conns, timeout)
  if type(conns) ~= "table" or getmetatable(conns) == Conn_mt then
    argerror(1, "wait", "table of connections expected, got "
      .. (getmetatable(conns) == Conn_mt and "a connection" or type(conns)))
  end
  local n = #conns
  local handles = {}
  for k = 1, n do
    local c = conns[k]
    local h = type(c) == "table" and rawget(c, 1)
    if not h then
      if getmetatable(c) == Conn_mt then
        error(format("bad argument #1 to 'wait' (connection %d is closed)", k), 2)
      end
      error(format("bad argument #1 to 'wait' (entry %d is not an mpconn connection)", k), 2)
    end
    handles[k] = h
  end
  local st, idx = c_wait(handles, to_ms(timeout, 2, "wait", -1))
  if st ~= OK then
    if MISUSE[st] then error(core.mpc_strerror(st), 2) end
    return nil, core.mpc_strerror(st), NAMES[st]
  end
  local ready = {}
  for k = 1, #idx do ready[k] = conns[idx[k]] end
  return ready
end

--- mpconn.frame_header(n) -> string: the 4- or 12-byte header of a message
-- of n bytes (the sans-I/O framing layer).
function M.frame_header(n)
  if math_type(n) ~= "integer" or n < 0 then
    argerror(1, "frame_header", "non-negative integer expected")
  end
  local _, header = core.mpc_frame_header(n)
  return header
end

--- mpconn.monotonic() -> seconds (float) on a clock that never jumps.
M.monotonic = core.monotonic

--- mpconn.strerror(code) -> the C library's text for a status name or number.
function M.strerror(code)
  if type(code) == "string" then code = M.status[code] end
  if math_type(code) ~= "integer" then argerror(1, "strerror", "status name or number expected") end
  return core.mpc_strerror(code)
end

M.Connection = Connection
M.Listener = Listener

return M
