-- A client on the mpconn Lua module, for the hostile suite.
--
--   lua5.4 lua_client.lua ADDRESS AUTHKEY_HEX [TIMEOUT]
--
-- mpconn.connect(ADDRESS, {authkey = ..., timeout = TIMEOUT, io_timeout =
-- TIMEOUT}), sends "hello", receives one message and prints "ok <hex>"
-- (exit 0), or prints "error <CODE>: <message>" (exit 1) for the first
-- nil, message, code it gets.
local mpconn = require "mpconn"

local address, keyhex, timeout = arg[1], arg[2], tonumber(arg[3])
local key = (keyhex:gsub("..", function(h) return string.char(tonumber(h, 16)) end))

local function fail(msg, code)
  print(string.format("error %s: %s", tostring(code), tostring(msg)))
  os.exit(1)
end

local c, msg, code = mpconn.connect(address, { authkey = key, timeout = timeout, io_timeout = timeout })
if not c then fail(msg, code) end
local ok
ok, msg, code = c:send_bytes("hello")
if not ok then fail(msg, code) end
local got
got, msg, code = c:recv_bytes()
if not got then fail(msg, code) end
print("ok " .. (got:gsub(".", function(ch) return string.format("%02x", ch:byte()) end)))
c:close()
os.exit(0)
