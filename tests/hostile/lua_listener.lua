-- A long-lived listener on the mpconn Lua module, for the hostile suite.
--
--   lua5.4 lua_listener.lua ADDRESS [--authkey-hex HEX] [--handshake-timeout S]
--                                   [--io-timeout S] [--backlog N]
--
-- Prints "listening on ADDRESS" first, then serves clients one after another
-- for ever, echoing every message back, and prints one outcome line per
-- client:
--
--   client N message <hex of the first 32 bytes> (<length> bytes)
--   client N handshake <CODE>: <message>    l:accept() returned nil, msg, code
--   client N recv <CODE>: <message>         c:recv_bytes() returned nil, msg, code
--   client N end EOF after K messages       clean close at a message boundary
local mpconn = require "mpconn"

local address = arg[1]
local opts = { backlog = 1 }
local i = 2
while arg[i] do
  local k, v = arg[i], arg[i + 1]
  if k == "--authkey-hex" then
    opts.authkey = (v:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
  elseif k == "--handshake-timeout" then opts.handshake_timeout = tonumber(v)
  elseif k == "--io-timeout" then opts.io_timeout = tonumber(v)
  elseif k == "--backlog" then opts.backlog = math.tointeger(tonumber(v))
  else io.stderr:write("unknown option " .. k .. "\n"); os.exit(2) end
  i = i + 2
end

io.stdout:setvbuf("line")
local l = assert(mpconn.listen(address, opts))
print("listening on " .. l.address)

local function hex(s)
  return (s:sub(1, 32):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local n = 0
while true do
  n = n + 1
  local c, msg, code = l:accept()
  if not c then
    print(string.format("client %d handshake %s: %s", n, tostring(code), tostring(msg)))
  else
    local count = 0
    while true do
      local s, err, ecode = c:recv_bytes()
      if not s then
        if ecode == "EOF" then
          print(string.format("client %d end EOF after %d messages", n, count))
        else
          print(string.format("client %d recv %s: %s", n, tostring(ecode), tostring(err)))
        end
        break
      end
      count = count + 1
      print(string.format("client %d message %s (%d bytes)", n, hex(s), #s))
      local ok, serr, scode = c:send_bytes(s)
      if not ok then
        print(string.format("client %d send %s: %s", n, tostring(scode), tostring(serr)))
        break
      end
    end
    c:close()
  end
  -- Collect what the last client left behind, so a growing heap would show
  -- as a leak in the C library rather than as Lua garbage not yet swept.
  collectgarbage()
end
