--[[ The client of the player-data example, in Lua: it connects to the
listener, sends the player data with conn:send (a pickle, as Python's
conn.send(obj)) and prints the listener's reply.  It talks to
examples/python/listener.py (stock CPython or mpconn) and to
examples/lua/listener.lua.

Usage: lua5.4 client.lua [ADDRESS] [AUTHKEY]   (as listener.lua)

The table becomes the dict of examples/python/client.py:
  {'name': 'Alice', 'level': 42, 'score': 1337.5,
   'inventory': ['sword', 'shield', 'potion'], 'position': (10, -3),
   'online': True}
Lua tables have no key order, so mpconn.dict(t, order) gives the order the
Python program would print (without it the keys are sent sorted);
mpconn.tuple makes position a tuple (a plain {10, -3} would be a list). ]]
local mpconn = require "mpconn"

local address = arg[1] or os.getenv("PLAYER_ADDRESS") or "localhost:6000"
local authkey = arg[2] or os.getenv("PLAYER_AUTHKEY") or "secret password"

local player = mpconn.dict({
  name = "Alice",
  level = 42,
  score = 1337.5,
  inventory = { "sword", "shield", "potion" },
  position = mpconn.tuple { 10, -3 },
  online = true,
}, { "name", "level", "score", "inventory", "position", "online" })

local conn <close> = assert(mpconn.connect(address, { authkey = authkey, timeout = 10 }))
assert(conn:send(player))
local reply, err, code = conn:recv()
if reply == nil and err then error(err .. " (" .. code .. ")") end
print("Sent player data, listener replied: " .. tostring(reply))
