-- Lua side of the benchmark: mpconn Lua <-> mpconn Lua, and the two Lua
-- references it is held to (SPEC 6), driven by the same loops.
--
--   lua5.4 bench_lua.lua MODE SIZE COUNT TRANSPORT [ra|floor|luasocket]
--
-- Without a fifth argument: mpconn, both ends reading exactly (the default;
-- impl lua-mpconn).  "ra": mpconn with read_ahead on both ends
-- (lua-mpconn-ra).  "floor": the Lua floor, bench/lua_floor.c (lua-floor;
-- lua_floor.so on LUA_CPATH).  "luasocket": the framing in pure Lua over
-- LuaSocket, bench/lua_luasocket.lua (lua-luasocket).  The floor and
-- LuaSocket runs never load mpconn (loading it changes the Lua state).
--
-- The measuring process listens and starts its peer with io.popen (Lua has
-- no fork); the peer connects and echoes (pingpong) or sinks (stream,
-- batch).  Prints one JSON object like bench_c.
local variant = arg[1] == "peer" and arg[6] or arg[5]
local here = arg[0]:match("^(.*)/[^/]*$") or "."

local BATCH = 256

-- A backend: listen(spec) -> listener (.address, :accept(), :close()),
-- connect(address) -> connection (send_bytes, send_many, recv_bytes,
-- close), now() -> seconds.
local backend, impl_name
if variant == "floor" then
  local F = require "lua_floor"
  impl_name = "lua-floor"
  backend = {
    now = F.monotonic,
    connect = F.connect,
    listen = function(spec)
      local fd, address = F.listen(spec)
      return {
        address = address,
        accept = function() return F.accept(fd) end,
        close = function()
          F.close_fd(fd)
          if address:sub(1, 1) == "/" then os.remove(address) end
        end,
      }
    end,
  }
elseif variant == "luasocket" then
  package.path = here .. "/?.lua;" .. package.path
  backend = require "lua_luasocket"
  impl_name = "lua-luasocket"
else
  local mpconn = require "mpconn"
  local ra = variant == "ra"
  impl_name = ra and "lua-mpconn-ra" or "lua-mpconn"
  local opts = ra and { read_ahead = true } or nil
  backend = {
    -- os.clock is CPU time: the monotonic clock of the module.
    now = mpconn.monotonic,
    connect = function(address) return assert(mpconn.connect(address, opts)) end,
    listen = function(spec)
      local l = assert(mpconn.listen(spec, opts))
      return { address = l.address, accept = function() return assert(l:accept(30)) end,
               close = function() l:close() end }
    end,
  }
end
local now = backend.now

-- The loops are written as a Lua programmer tuning a hot loop would (and as
-- bench_py.py does): the methods are looked up once, and failures are
-- checked inline instead of through a call to assert per message.
local function peer(mode, size, count, addr)
  local c = backend.connect(addr)
  local send, recv = c.send_bytes, c.recv_bytes
  if mode == "pingpong" then
    for _ = 1, count do
      local m, err = recv(c)
      if not m then error(err) end
      send(c, m)
    end
  else
    for _ = 1, count do
      local m, err = recv(c)
      if not m then error(err) end
    end
    send(c, "k")
  end
  c:close()
end

local function measure(mode, size, count, transport)
  local spec
  if transport == "tcp" then
    spec = "127.0.0.1:0"
  else
    spec = os.tmpname() .. ".sock"
  end
  local l = backend.listen(spec)
  local cmd = string.format("exec %q %q peer %s %d %d %q%s", arg[-1], arg[0], mode, size, count,
    l.address, variant and " " .. variant or "")
  local child = assert(io.popen(cmd, "r"))
  local c = l:accept()
  local payload = string.rep("x", size)
  local lat = {}
  local t0 = now()
  local send, recv = c.send_bytes, c.recv_bytes
  if mode == "pingpong" then
    for i = 1, count do
      local a = now()
      send(c, payload)
      local m, err = recv(c)
      if not m then error(err) end
      lat[i] = now() - a
    end
  elseif mode == "batch" then
    local batch = {}
    for i = 1, BATCH do batch[i] = payload end
    local left = count
    while left > 0 do
      local k = math.min(left, BATCH)
      if k < BATCH then
        batch = table.move(batch, 1, k, 1, {})
      end
      assert(c:send_many(batch))
      left = left - k
    end
    assert(c:recv_bytes())
  else
    for _ = 1, count do
      local ok, err = send(c, payload)
      if not ok then error(err) end
    end
    assert(c:recv_bytes())
  end
  local secs = now() - t0
  child:close()
  c:close()
  l:close()
  local p50, p99 = 0, 0
  if #lat > 0 then
    table.sort(lat)
    p50 = lat[#lat // 2 + 1] * 1e6
    p99 = lat[math.floor(#lat * 0.99) + 1] * 1e6
  end
  print(string.format('{"impl": "%s", "mode": "%s", "size": %d, "count": %d, ' ..
    '"seconds": %.6f, "ops_per_s": %.1f, "mb_per_s": %.1f, "p50_us": %.2f, "p99_us": %.2f}',
    impl_name, mode, size, count, secs, count / secs, count * size / secs / 1e6, p50, p99))
end

if arg[1] == "peer" then
  peer(arg[2], tonumber(arg[3]), tonumber(arg[4]), arg[5])
else
  measure(arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4])
end
