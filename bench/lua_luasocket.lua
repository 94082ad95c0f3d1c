-- lua_luasocket.lua - the protocol's framing in pure Lua over LuaSocket, for
-- the benchmark (SPEC 6, issue 15: mpconn Lua should be at least 3x this).
--
-- Written as a competent Lua programmer would, with what LuaSocket offers:
--   * a message is a 4-byte big-endian signed length and the payload; a
--     length that does not fit in it is sent as -1 and an 8-byte length
--     (CPython's framing);
--   * send_bytes packs header and payload into one string (one send) up to
--     SMALL bytes, and sends them as two strings above (copying a large
--     payload costs more than a second system call);
--   * send_many concatenates the packed small messages and sends them at
--     once (a large payload goes as send_bytes sends it);
--   * recv_bytes reads the header and the payload with receive(n), which
--     reads through LuaSocket's own buffer (8 KiB): many small frames are
--     served by one recv, as from a buffered reader.  No Lua-level buffer on
--     top: string.sub over a chunk costs more than LuaSocket's C buffer.
-- No handshake (the benchmark uses no authkey), no timeouts (blocking).
--
-- Used by bench_lua.lua (argument "luasocket").  Needs LuaSocket for Lua 5.4
-- (Debian: lua-socket; .ci/deps.sh).

local socket = require "socket"
local unix = require "socket.unix"

local pack, unpack, concat = string.pack, string.unpack, table.concat

local SMALL = 16 * 1024
local SHORT_MAX = 0x7fffffff

local Conn = {}
Conn.__index = Conn

local function header(n)
  if n > SHORT_MAX then return pack(">i4I8", -1, n) end
  return pack(">i4", n)
end

function Conn.send_bytes(self, s)
  local sock, n = self.sock, #s
  if n <= SMALL then
    return sock:send(pack(">s4", s))
  end
  local ok, err = sock:send(header(n))
  if not ok then return nil, err end
  return sock:send(s)
end

function Conn.send_many(self, t)
  local sock, parts, k = self.sock, {}, 0
  for i = 1, #t do
    local s = t[i]
    local n = #s
    if n <= SMALL then
      k = k + 1
      parts[k] = pack(">s4", s)
    else
      -- A large payload is not copied: what is gathered goes first.
      k = k + 1
      parts[k] = header(n)
      local ok, err = sock:send(concat(parts, "", 1, k))
      if not ok then return nil, err end
      ok, err = sock:send(s)
      if not ok then return nil, err end
      k = 0
    end
  end
  if k == 0 then return true end
  return sock:send(concat(parts, "", 1, k))
end

function Conn.recv_bytes(self)
  local sock = self.sock
  local h, err = sock:receive(4)
  if not h then return nil, err end
  local n = unpack(">i4", h)
  if n == -1 then
    h, err = sock:receive(8)
    if not h then return nil, err end
    n = unpack(">I8", h)
  elseif n < 0 then
    return nil, "bad header"
  end
  if n == 0 then return "" end
  return sock:receive(n)
end

function Conn.close(self)
  self.sock:close()
end

local function wrap(sock)
  if sock.setoption then pcall(sock.setoption, sock, "tcp-nodelay", true) end
  return setmetatable({ sock = sock }, Conn)
end

local M = { now = socket.gettime }

--- listen(spec) -> listener with .address, :accept(), :close()
-- spec: "127.0.0.1:0" (TCP, ephemeral port) or a Unix socket path.
function M.listen(spec)
  local srv, address
  if spec:sub(1, 1) == "/" then
    os.remove(spec)
    srv = assert(unix.stream())
    assert(srv:bind(spec))
    assert(srv:listen(1))
    address = spec
  else
    local host, port = spec:match("^(.*):(%d+)$")
    srv = assert(socket.bind(host, tonumber(port), 1))
    local ip, p = srv:getsockname()
    address = ip .. ":" .. p
  end
  return {
    address = address,
    accept = function(self) return wrap(assert(srv:accept())) end,
    close = function(self)
      srv:close()
      if address:sub(1, 1) == "/" then os.remove(address) end
    end,
  }
end

--- connect(address) -> conn
function M.connect(address)
  if address:sub(1, 1) == "/" then
    local sock = assert(unix.stream())
    assert(sock:connect(address))
    return wrap(sock)
  end
  local host, port = address:match("^(.*):(%d+)$")
  return wrap(assert(socket.connect(host, tonumber(port))))
end

return M
