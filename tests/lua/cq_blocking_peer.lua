-- Child process for test_cqueues.lua: a blocking mpconn listener (the
-- plain module) on 127.0.0.1 with KEYHEX as authkey; prints its address,
-- then serves CLIENTS connections one after the other.  The first message
-- names the mode: "bytes" (echo recv_bytes -> send_bytes) or "values" (echo
-- recv -> send) until end of file; a failed handshake counts as served.
-- Prints LUA-OK <served> (exit 0) or LUA-FAIL <why> (exit 1).
local mpconn = require "mpconn"
local keyhex, n = arg[1], tonumber(arg[2])
local key = (keyhex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
local l = assert(mpconn.listen("127.0.0.1:0", { authkey = key, backlog = 16, timeout = 60 }))
print(l.address)
io.stdout:flush()
local served = 0
while served < n do
  local c, e, code = l:accept(60)
  if not c and code ~= "AUTH" then print("LUA-FAIL accept " .. tostring(e)); os.exit(1) end
  served = served + 1
  if c then
    c:set_timeout(60)
    local mode = assert(c:recv_bytes())
    while true do
      local v, err, cd
      if mode == "values" then
        v, err, cd = c:recv({ tuple = "marked", bytes = "marked" })
        if v == nil and err then
          if cd == "EOF" then break end
          print("LUA-FAIL recv " .. err); os.exit(1)
        end
        assert(c:send(v))
      else
        v, err, cd = c:recv_bytes()
        if not v then
          if cd == "EOF" then break end
          print("LUA-FAIL recv " .. err); os.exit(1)
        end
        assert(c:send_bytes(v))
      end
    end
    c:close()
  end
end
l:close()
print("LUA-OK " .. served)
