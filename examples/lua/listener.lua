--[[ The listener of the player-data example, in Lua: it waits for a client
and prints the player data the client sends, then replies "thanks".  It
talks to examples/python/client.py (stock CPython or mpconn) and to
examples/lua/client.lua.

Usage: lua5.4 listener.lua [ADDRESS] [AUTHKEY]
  ADDRESS  "host:port" (port 0 picks a free port), "/unix/path" or "@abstract";
           default $PLAYER_ADDRESS or "localhost:6000"
  AUTHKEY  default $PLAYER_AUTHKEY or "secret password"

From the build tree (see README):
  LUA_CPATH="build-lua/lua/?.so;;" LUA_PATH="build-lua/lua/?.lua;;" lua5.4 examples/lua/listener.lua

The Python client sends a pickled dict (conn.send).  The Lua module moves
bytes (values are a later layer), so this listener prints the message as
bytes, and answers with the pickle of the string "thanks" written out by hand
so that the client's conn.recv() understands it. ]]
local mpconn = require "mpconn"

local address = arg[1] or os.getenv("PLAYER_ADDRESS") or "localhost:6000"
local authkey = arg[2] or os.getenv("PLAYER_AUTHKEY") or "secret password"

-- pickle.dumps("thanks", protocol=0)
local THANKS = "Vthanks\np0\n."

-- Printable ASCII as is, everything else as \xNN (like a Python bytes repr).
local function show(s)
  return (s:gsub("[^ -~]", function(c) return string.format("\\x%02x", c:byte()) end))
end

local listener <close> = assert(mpconn.listen(address, { authkey = authkey }))
print("Listening on " .. listener.address)
io.stdout:flush()

local conn <close> = assert(listener:accept())
print("Connection accepted" .. (conn:peer() ~= "" and (" from " .. conn:peer()) or ""))
local data = assert(conn:recv_bytes())
print(string.format("Player Data Received (%d bytes): %s", #data, show(data)))
io.stdout:flush()
assert(conn:send_bytes(THANKS))
-- Wait until the client has read the reply and hung up.
conn:recv_bytes()
