--[[ A client on libuv (luv), with no blocking call: connects with the
nonblocking option (the connect and the handshake then finish in the
connection's calls), sends messages of growing sizes (0 B to 16 MiB) one
after the other and checks that each comes back byte for byte, while a luv
timer ticks to show the loop never stops.  Talks to luv_echo.lua or any
echoing listener.

Usage: lua5.4 luv_client.lua ADDRESS [AUTHKEY]
  AUTHKEY  default "secret password"; "-" for none
Prints "Echoed <n> messages, <bytes> bytes; timer ticked <t> times".

Every wake-up only retries: a call that cannot go on says "wantread" or
"wantwrite" again, and the poll is re-armed with c:events().  Set
MPCONN_LUV_SPURIOUS=1 to add a timer that wakes the same callback every 2 ms
for nothing: the result is the same. ]]
local uv = require "luv"
local mpconn = require "mpconn"

local address = assert(arg[1], "usage: luv_client.lua ADDRESS [AUTHKEY]")
local key = arg[2] or "secret password"
if key == "-" then key = nil end

local function message(n, seed)
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char((i * 31 + seed) % 256) end
  local s = table.concat(t)
  return string.rep(s, n // 256 + 1):sub(1, n)
end
local sizes = { 0, 1, 255, 1024, 1025, 65536, 1 << 20, 4 << 20, (4 << 20) + 1, 16 << 20 }

local c = assert(mpconn.connect(address, { authkey = key, nonblocking = true }))
local poll = uv.new_poll(c:pollfd())
local ticks, bytes, i, sent = 0, 0, 1, false
local timer = uv.new_timer()
timer:start(1, 1, function() ticks = ticks + 1 end)
local spurious
local failure

local function stop(why)
  failure = why
  poll:close(); timer:close()
  if spurious then spurious:close() end
  c:close()
end

local function on_ready(err)
  if err then return stop(err) end
  if c:is_closed() then return end
  while i <= #sizes do
    local m = message(sizes[i], i)
    if not sent then
      local ok, msg, code = c:send_bytes(m)
      if not ok then
        if code ~= "AGAIN" then return stop(msg) end
        break
      end
      sent = true
    end
    local r, msg, code = c:recv_bytes()
    if r == nil then
      if code ~= "AGAIN" then return stop(msg) end
      break
    end
    if r ~= m then return stop(string.format("message %d (%d bytes) came back different (%d bytes)", i, #m, #r)) end
    bytes = bytes + #r
    i, sent = i + 1, false
  end
  if i > #sizes then return stop() end
  poll:start(c:events(), on_ready)
end

if os.getenv("MPCONN_LUV_SPURIOUS") == "1" then
  spurious = uv.new_timer()
  spurious:start(2, 2, function() on_ready() end)
end
on_ready()
uv.run()
if failure then
  print("FAILED: " .. failure)
  os.exit(1)
end
print(string.format("Echoed %d messages, %d bytes; timer ticked %d times", #sizes, bytes, ticks))
