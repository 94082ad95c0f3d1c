-- Lua side of the benchmark: mpconn Lua <-> mpconn Lua.
--
--   lua5.4 bench_lua.lua MODE SIZE COUNT TRANSPORT [ra]
--
-- "ra" turns read_ahead on at both ends (impl lua-mpconn-ra); without it
-- both read exactly (the default).
--
-- The measuring process listens and starts its peer with io.popen (Lua has
-- no fork); the peer connects and echoes (pingpong) or sinks (stream,
-- batch).  Prints one JSON object like bench_c.
local mpconn = require "mpconn"

local BATCH = 256

local function now()
  -- os.clock is CPU time; use the monotonic clock through the module if it
  -- has one, else /proc/uptime-free fallback via os.time (coarse).
  return mpconn.monotonic and mpconn.monotonic() or os.time()
end

-- The loops are written as a Lua programmer tuning a hot loop would (and as
-- bench_py.py does): the methods are looked up once, and failures are
-- checked inline instead of through a call to assert per message.
local function peer(mode, size, count, addr, opts)
  local c = assert(mpconn.connect(addr, opts))
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

local function measure(mode, size, count, transport, ra)
  local spec
  if transport == "tcp" then
    spec = "127.0.0.1:0"
  else
    spec = os.tmpname() .. ".sock"
  end
  local l = assert(mpconn.listen(spec, ra and { read_ahead = true } or nil))
  local cmd = string.format("exec %q %q peer %s %d %d %q%s", arg[-1], arg[0], mode, size, count,
    l.address, ra and " ra" or "")
  local child = assert(io.popen(cmd, "r"))
  local c = assert(l:accept(30))
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
    ra and "lua-mpconn-ra" or "lua-mpconn", mode, size, count, secs, count / secs, count * size / secs / 1e6, p50, p99))
end

if arg[1] == "peer" then
  peer(arg[2], tonumber(arg[3]), tonumber(arg[4]), arg[5],
    arg[6] == "ra" and { read_ahead = true } or nil)
else
  measure(arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4], arg[5] == "ra")
end
