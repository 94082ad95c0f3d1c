-- The Lua player-data examples run against each other and against the
-- Python examples on stock CPython (examples/python/*.py).
local H = require "harness"

local EX = H.dir .. "/../../examples"
local PY = os.getenv("MPCONN_STOCK_PYTHON") or "python3"

local function start(cmd)
  local p = H.spawn(cmd)
  local line = p:read("l") or ""
  local addr = line:match("^Listening on (.*)$")
  if not addr then error("listener did not start: " .. line .. (p:read("a") or "")) end
  local host, port = addr:match("^%('(.*)', (%d+)%)$") -- a Python repr of a tuple
  if host then addr = host .. ":" .. port end
  return p, addr
end

local function run(cmd)
  local p = H.spawn(cmd)
  return H.finish(p)
end

local PLAYER = "Player Data Received: {'name': 'Alice', 'level': 42, 'score': 1337.5, "
  .. "'inventory': ['sword', 'shield', 'potion'], 'position': (10, -3), 'online': True}"

local lua_listener = H.lua .. " " .. H.q(EX .. "/lua/listener.lua") .. " "
local lua_client = H.lua .. " " .. H.q(EX .. "/lua/client.lua") .. " "

H.test("the Lua listener example prints what the stock CPython client example sends", function()
  local p, addr = start(lua_listener .. "127.0.0.1:0")
  local out, ok = run(H.q(PY) .. " " .. H.q(EX .. "/python/client.py") .. " " .. H.q(addr))
  H.match(out, "listener replied: thanks", "python client output")
  H.ok(ok, "python client exit status")
  local lout, lok = H.finish(p)
  H.ok(lout:find(PLAYER, 1, true), "listener output: " .. lout)
  H.ok(lok, "listener exit status")
end)

H.test("the Lua client example's player data reaches the stock CPython listener example", function()
  local p, addr = start(H.q(PY) .. " " .. H.q(EX .. "/python/listener.py") .. " 127.0.0.1:0")
  local out, ok = run(lua_client .. H.q(addr))
  H.match(out, "^Sent player data, listener replied: thanks\n$", "lua client output")
  H.ok(ok, "lua client exit status")
  local pout, pok = H.finish(p)
  H.ok(pout:find(PLAYER, 1, true), "python listener output: " .. pout)
  H.ok(pok, "python listener exit status")
end)

H.test("the Lua examples talk to each other over an abstract address", function()
  local p, addr = start(lua_listener .. H.q(H.address("abstract")) .. " " .. H.q("another key"))
  local out, ok = run(lua_client .. H.q(addr) .. " " .. H.q("another key"))
  H.match(out, "listener replied: thanks", "client output")
  H.ok(ok, "client exit status")
  local lout = H.finish(p)
  H.ok(lout:find(PLAYER, 1, true), "listener output: " .. lout)
end)

H.done()
