-- Child process for test_tls.lua: a Lua listener or client with the options
-- given as a Lua chunk (OPTS, e.g. 'return {authkey = "k", tls = {...}}').
--
--   lua tls_peer.lua listen ADDRESS OPTS COUNT
--       prints "ADDRESS <address>", then accepts COUNT clients one after
--       another; for each prints "ACCEPTED" and echoes every message until
--       end of file ("ECHOED <n>"), or "ACCEPT-FAILED <code> <message>"
--       (and serves the next one).  "DONE" at the end (exit 0).
--   lua tls_peer.lua client ADDRESS OPTS
--       connects and echoes every message until end of file ("ECHOED <n>",
--       exit 0), or "CONNECT-FAILED <code> <message>" (exit 3).
-- "RECV-FAILED <code> <message>" on any other failure (exit 4).
local mpconn = require "mpconn"
local mode, address, chunk, count = arg[1], arg[2], arg[3], tonumber(arg[4] or "1")
local opts = assert(load(chunk, "=OPTS", "t", {}))()

local function echo(c)
  c:set_timeout(60)
  local n = 0
  while true do
    local s, m, cd = c:recv_bytes()
    if not s then
      if cd == "EOF" then break end
      print("RECV-FAILED " .. tostring(cd) .. " " .. tostring(m))
      io.stdout:flush()
      os.exit(4)
    end
    assert(c:send_bytes(s))
    n = n + 1
  end
  c:close()
  print("ECHOED " .. n)
  io.stdout:flush()
end

if mode == "listen" then
  local l, msg, code = mpconn.listen(address, opts)
  if not l then
    print("LISTEN-FAILED " .. tostring(code) .. " " .. tostring(msg))
    os.exit(3)
  end
  print("ADDRESS " .. l.address)
  io.stdout:flush()
  for _ = 1, count do
    local c, m, cd = l:accept(60)
    if c then
      print("ACCEPTED")
      io.stdout:flush()
      echo(c)
    else
      print("ACCEPT-FAILED " .. tostring(cd) .. " " .. tostring(m))
      io.stdout:flush()
    end
  end
  l:close()
  print("DONE")
elseif mode == "client" then
  local c, msg, code = mpconn.connect(address, opts)
  if not c then
    print("CONNECT-FAILED " .. tostring(code) .. " " .. tostring(msg))
    os.exit(3)
  end
  echo(c)
else
  error("usage: tls_peer.lua listen|client ADDRESS OPTS [COUNT]")
end
os.exit(0)
