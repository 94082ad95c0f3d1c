--[[ The listener of the player-data example, in Lua: it waits for a client,
prints the player data the client sends (conn:recv, the safe counterpart of
Python's conn.recv()) and replies "thanks".  It talks to
examples/python/client.py (stock CPython or mpconn) and to
examples/lua/client.lua.

Usage: lua5.4 listener.lua [ADDRESS] [AUTHKEY]
  ADDRESS  "host:port" (port 0 picks a free port), "/unix/path" or "@abstract";
           default $PLAYER_ADDRESS or "localhost:6000"
  AUTHKEY  default $PLAYER_AUTHKEY or "secret password"

From the build tree (see README):
  LUA_CPATH="build/lua/?.so;;" LUA_PATH="build/lua/?.lua;;" lua5.4 examples/lua/listener.lua

recv{ordered = true, tuple = "marked"} keeps the dict's key order and the
tuple, so mpconn.repr prints exactly what the Python listener prints.  A
pickle that would run code (os.system, ...) is refused: recv returns nil,
a message naming the opcode and the global, and "VALUE". ]]
local mpconn = require "mpconn"

local address = arg[1] or os.getenv("PLAYER_ADDRESS") or "localhost:6000"
local authkey = arg[2] or os.getenv("PLAYER_AUTHKEY") or "secret password"

local listener <close> = assert(mpconn.listen(address, { authkey = authkey }))
print("Listening on " .. listener.address)
io.stdout:flush()

local conn <close> = assert(listener:accept())
print("Connection accepted" .. (conn:peer() ~= "" and (" from " .. conn:peer()) or ""))
local data, err, code = conn:recv({ ordered = true, tuple = "marked" })
if data == nil and err then
  print("Refused: " .. err .. " (" .. code .. ")")
else
  print("Player Data Received: " .. mpconn.repr(data))
end
io.stdout:flush()
assert(conn:send("thanks"))
-- Wait until the client has read the reply and hung up.
conn:recv_bytes()
