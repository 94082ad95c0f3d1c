-- lua_peer.lua - one side of an interop-matrix cell, through the mpconn Lua
-- module (require "mpconn").  Same command line and output as py_peer.py
-- and c_peer.c:
--
--   lua5.4 lua_peer.lua server ADDRESS --sizes A,B,... --seed S [--mode each|all]
--   lua5.4 lua_peer.lua client ADDRESS --sizes A,B,... --seed S
--
-- The authkey is the text of $MATRIX_AUTHKEY (unset = no handshake).
-- Message i is pattern(seed, i, size) (see pattern.py).  Every received
-- message is compared byte for byte with the pattern and reported as
--   RECV <index> <length> - ok|BAD
-- (Lua has no SHA-256 of its own: the byte-exact comparison is the check,
-- the other side and the harness check the digest.)
-- Exit status: 0 success, 3 authentication error ("AUTHERROR <text>"),
-- 4 any other error ("ERROR <code>: <text>"), 5 a message was not
-- byte-exact.
local mpconn = require "mpconn"

local BLOCK_LEN, OFFSET_STEP, DEADLINE = 65521, 7919, 120.0

local function out(line)
  io.stdout:write(line, "\n")
  io.stdout:flush()
end

local function usage()
  io.stderr:write("usage: lua_peer.lua server|client ADDRESS --sizes A,B,... --seed S [--mode each|all]\n")
  os.exit(2)
end

local role, address = arg[1], arg[2]
if not role or not address then usage() end
local sizes, seed, mode = nil, 1, "each"
local i = 3
while i <= #arg do
  local k, v = arg[i], arg[i + 1]
  if v == nil then usage() end
  if k == "--sizes" then
    sizes = {}
    for s in v:gmatch("[^,]+") do sizes[#sizes + 1] = math.tointeger(tonumber(s)) or usage() end
  elseif k == "--seed" then
    seed = math.tointeger(tonumber(v)) or usage()
  elseif k == "--mode" then
    if v ~= "each" and v ~= "all" then usage() end
    mode = v
  else
    usage()
  end
  i = i + 2
end
if not sizes then usage() end

-- The pattern block: an LCG, 8 bits per step (integers are 64-bit here).
local block
do
  local x = (seed * 2654435761 + 12345) & 0x7FFFFFFF
  local bytes, char = {}, string.char
  for j = 1, BLOCK_LEN do
    x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    bytes[j] = char((x >> 16) & 0xFF)
  end
  block = table.concat(bytes)
end

-- Message index (0-based): size bytes of the block, cyclically, from a
-- per-index offset.
local function message(index, size)
  if size == 0 then return "" end
  local off = (index * OFFSET_STEP) % BLOCK_LEN
  local reps = (off + size) // BLOCK_LEN + 1
  return string.rep(block, reps):sub(off + 1, off + size)
end

local bad = 0
local function check(index, data)
  local ok = data == message(index, sizes[index + 1])
  if not ok then bad = bad + 1 end
  out(string.format("RECV %d %d - %s", index, #data, ok and "ok" or "BAD"))
end

local function finish(ok, msg, code)
  if ok then return end
  if code == "AUTH" then
    out("AUTHERROR " .. tostring(msg))
    os.exit(3)
  end
  out(string.format("ERROR %s: %s", tostring(code), tostring(msg)))
  os.exit(4)
end

local key = os.getenv("MATRIX_AUTHKEY")
local opts = { authkey = key, timeout = DEADLINE, io_timeout = DEADLINE }

local function send(conn, index, data)
  finish(conn:send_bytes(data))
  out(string.format("SENT %d %d", index, #data))
end

local function recv(conn)
  local data, msg, code = conn:recv_bytes()
  if data == nil then finish(nil, msg, code) end
  return data
end

if role == "server" then
  local l, msg, code = mpconn.listen(address, opts)
  if not l then finish(nil, msg, code) end
  out("ADDRESS " .. l.address)
  local conn
  conn, msg, code = l:accept(DEADLINE)
  if not conn then finish(nil, msg, code) end
  out("ACCEPTED")
  if mode == "each" then
    for j = 0, #sizes - 1 do
      local data = recv(conn)
      check(j, data)
      send(conn, j, data)
    end
  else
    local got = {}
    for j = 0, #sizes - 1 do
      got[j] = recv(conn)
      check(j, got[j])
    end
    for j = 0, #sizes - 1 do send(conn, j, got[j]) end
  end
  -- Wait for the client to hang up, so our close cuts nothing off.
  local extra, emsg, ecode = conn:recv_bytes()
  if extra ~= nil then finish(nil, "unexpected extra message", "PROTO") end
  if ecode ~= "EOF" then finish(nil, emsg, ecode) end
  conn:close()
  l:close()
elseif role == "client" then
  local conn, msg, code = mpconn.connect(address, opts)
  if not conn then finish(nil, msg, code) end
  out("CONNECTED")
  for j = 0, #sizes - 1 do
    send(conn, j, message(j, sizes[j + 1]))
    check(j, recv(conn))
  end
  conn:close()
else
  usage()
end
if bad > 0 then os.exit(5) end
out("DONE")
os.exit(0)
