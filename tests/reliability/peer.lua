-- A Lua peer for the reliability suite (the mpconn Lua module).
--
--   lua5.4 peer.lua listen ADDRESS [--authkey K] [--count N] [--idle S]
--   lua5.4 peer.lua send ADDRESS [--authkey K] < records
--   lua5.4 peer.lua bigsend ADDRESS [--authkey K] [--size BYTES]
--
-- listen prints "listening on ADDR" on stderr, accepts one client and writes
-- each received message to stdout as a record: 8-byte big-endian length,
-- then the bytes.  send reads such records from stdin and sends each as one
-- message.  bigsend sends one message of --size bytes.  Any failure prints
-- "error: <message> (<code>)" on stderr and exits 1; every wait has a
-- deadline (--idle seconds, default 30).
local mpconn = require "mpconn"

local mode, address = arg[1], arg[2]
local opts = { idle = 30, count = math.huge, size = 64 * 1024 * 1024 }
local i = 3
while arg[i] do
  local k, v = arg[i], arg[i + 1]
  if k == "--authkey" then opts.authkey = v
  elseif k == "--count" then opts.count = tonumber(v)
  elseif k == "--idle" then opts.idle = tonumber(v)
  elseif k == "--size" then opts.size = tonumber(v)
  else io.stderr:write("unknown option " .. k .. "\n"); os.exit(2) end
  i = i + 2
end

local function die(msg, code)
  io.stderr:write(string.format("error: %s (%s)\n", tostring(msg), tostring(code)))
  io.stderr:flush()
  io.stdout:flush()
  os.exit(1)
end

local copts = { authkey = opts.authkey, timeout = opts.idle, io_timeout = opts.idle }
io.stdout:setvbuf("full")

if mode == "listen" then
  copts.backlog = 16
  local l, err, code = mpconn.listen(address, copts)
  if not l then die(err, code) end
  io.stderr:write("listening on " .. l.address .. "\n")
  io.stderr:flush()
  local c
  c, err, code = l:accept(opts.idle)
  if not c then die(err, code) end
  local n = 0
  while n < opts.count do
    local ready = c:poll(opts.idle)
    if not ready then die(string.format("no message within %s s (after %d)", opts.idle, n), "TIMEOUT") end
    local msg
    msg, err, code = c:recv_bytes()
    if not msg then
      if code == "EOF" and opts.count == math.huge then break end
      die(err, code)
    end
    io.stdout:write(string.pack(">I8", #msg), msg)
    n = n + 1
  end
  io.stdout:flush()
  c:close()
  l:close()
elseif mode == "send" or mode == "bigsend" then
  local c, err, code = mpconn.connect(address, copts)
  if not c then die(err, code) end
  io.stderr:write("connected\n")
  io.stderr:flush()
  local ok
  if mode == "bigsend" then
    io.stderr:write("sending " .. opts.size .. " bytes\n")
    io.stderr:flush()
    ok, err, code = c:send_bytes(string.rep("\xa5", opts.size))
    if not ok then die(err, code) end
  else
    local data = io.stdin:read("a")
    local pos, sent = 1, 0
    while pos <= #data do
      local len = string.unpack(">I8", data, pos)
      ok, err, code = c:send_bytes(data, pos + 8, pos + 7 + len)
      if not ok then die(err, code) end
      pos = pos + 8 + len
      sent = sent + 1
    end
    -- Wait for the receiver to close, so a reset after our last write shows.
    local ready = c:poll(opts.idle)
    if ready then
      local msg
      msg, err, code = c:recv_bytes()
      if not msg and code ~= "EOF" then die(err, code) end
    end
    io.stderr:write("sent " .. sent .. "\n")
  end
  c:close()
else
  io.stderr:write("usage: peer.lua listen|send|bigsend ADDRESS [options]\n")
  os.exit(2)
end
