--[[ An echo listener on libuv (luv), with no blocking call: every mpconn
object is non-blocking (the nonblocking option, or set_timeout(0)) and is
watched with uv.new_poll(obj:pollfd()) for obj:events().  It serves any
number of clients at once: stock CPython Clients, mpconn Python, Lua (see
luv_client.lua), echoing every message back byte for byte.

Usage: lua5.4 luv_echo.lua [ADDRESS] [AUTHKEY] [CLIENTS]
  ADDRESS  default "127.0.0.1:6000" (port 0 picks a free port)
  AUTHKEY  default "secret password"; "-" for none
  CLIENTS  serve that many clients, then exit (default: run forever)
Prints "Listening on <address>" first, then "Served <n> clients".

The contract (lua/README.md, "Event loops"): a call that would wait returns
nil, "wantread" or nil, "wantwrite" (third value "AGAIN") having lost
nothing; call it again once the descriptor is ready for obj:events().  A
wake-up may be spurious (the call just says "want..." again), so the
callbacks below simply retry.  Before waiting, they keep receiving until a
receive says "wantread": that consumes every message already buffered
(c:pending()), for which the descriptor would stay silent. ]]
local uv = require "luv"
local mpconn = require "mpconn"

local address = arg[1] or "127.0.0.1:6000"
local key = arg[2] or "secret password"
if key == "-" then key = nil end
local limit = tonumber(arg[3])

local l = assert(mpconn.listen(address, { authkey = key, backlog = 128, nonblocking = true }))
print("Listening on " .. l.address)
io.stdout:flush()

local lpoll = uv.new_poll(l:pollfd())
local accepted, served = 0, 0

local function serve(c)
  local poll = uv.new_poll(c:pollfd())
  local function finish(why)
    if why then io.stderr:write("client dropped: " .. why .. "\n") end
    poll:close()
    c:close()
    served = served + 1
    if limit and served == limit then
      print("Served " .. served .. " clients")
      io.stdout:flush()
    end
  end
  local function on_ready(err)
    if err then return finish(err) end
    while true do
      -- Queued output first (and the handshake, after accept): a send is
      -- only taken whole once nothing is queued before it.
      local ok, msg, code = c:flush()
      if not ok then
        if code ~= "AGAIN" then return finish(msg) end
        break
      end
      local m
      m, msg, code = c:recv_bytes()
      if m == nil then
        if code == "EOF" then return finish() end
        if code ~= "AGAIN" then return finish(msg) end
        break
      end
      -- Accepted whole: written, or its rest queued inside c (flushed above
      -- on the next round or wake-up).
      ok, msg, code = c:send_bytes(m)
      if not ok then return finish(msg) end
    end
    poll:start(c:events(), on_ready)
  end
  on_ready() -- starts the handshake at once
end

lpoll:start("r", function(err)
  assert(not err, err)
  while not limit or accepted < limit do
    local c, msg, code = l:accept()
    if not c then
      if code ~= "AGAIN" then io.stderr:write("accept: " .. msg .. "\n") end
      return
    end
    accepted = accepted + 1
    serve(c)
  end
  lpoll:close()
  l:close()
end)

uv.run()
