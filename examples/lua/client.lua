--[[ The client of the player-data example, in Lua: it connects to the
listener and sends the player data, then prints the listener's reply.  It
talks to examples/python/listener.py (stock CPython or mpconn) and to
examples/lua/listener.lua.

Usage: lua5.4 client.lua [ADDRESS] [AUTHKEY]   (as listener.lua)

The Python listener reads the message with conn.recv(), which unpickles.  The
Lua module moves bytes (values are a later layer), so the player dict is
sent as the bytes of its pickle, written out by hand (protocol 0, which every
CPython reads).  It is the dict of examples/python/client.py:
  {"name": "Alice", "level": 42, "score": 1337.5,
   "inventory": ["sword", "shield", "potion"], "position": (10, -3),
   "online": True} ]]
local mpconn = require "mpconn"

local address = arg[1] or os.getenv("PLAYER_ADDRESS") or "localhost:6000"
local authkey = arg[2] or os.getenv("PLAYER_AUTHKEY") or "secret password"

local PLAYER = table.concat({
  "(dp0\n",
  "Vname\np1\nVAlice\np2\ns",
  "Vlevel\np3\nI42\ns",
  "Vscore\np4\nF1337.5\ns",
  "Vinventory\np5\n(lp6\nVsword\np7\naVshield\np8\naVpotion\np9\nas",
  "Vposition\np10\n(I10\nI-3\ntp11\ns",
  "Vonline\np12\nI01\ns",
  ".",
})

local function show(s)
  return (s:gsub("[^ -~]", function(c) return string.format("\\x%02x", c:byte()) end))
end

local conn <close> = assert(mpconn.connect(address, { authkey = authkey, timeout = 10 }))
assert(conn:send_bytes(PLAYER))
local reply = assert(conn:recv_bytes())
print(string.format("Sent player data, listener replied (%d bytes): %s", #reply, show(reply)))
