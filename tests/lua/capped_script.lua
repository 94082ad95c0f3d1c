-- Run by capped_host (tests/lua/capped_host.c), a host whose Lua allocator
-- refuses to go past MPCONN_LUA_CAP bytes (issue 14, item 3).  Not a test
-- of its own: ctest runs "capped_host capped_script.lua" (lua.capped_host).
local function check(cond, msg) if not cond then error(msg, 2) end end

-- 0. require leaves the host's allocator alone (SPEC 11): lua_getallocf
-- gives the very function and userdata the host made the state with, before
-- and after loading the module (and at the end, after using it).  A wrapper
-- that a host stacked another allocator on leaked its state at lua_close.
check(host.alloc_is_ours(), "the host's allocator before require")
local mpconn = require "mpconn"
check(host.alloc_is_ours(), "require \"mpconn\" replaced the state's allocator")
local MiB = 1 << 20
local BIG = 65 * MiB -- above the library's allocation step (64 MiB) and the staging buffer (4 MiB)
local ROUNDS = 20

-- 1. Receives that fail for lack of Lua memory leak nothing.
do
  local a, b = assert(mpconn.pipe(false))
  local pid = host.sender(b:fileno(), ROUNDS, BIG)
  b:close()
  local before
  for i = 1, ROUNDS do
    local ok, err = pcall(a.recv_bytes, a)
    check(not ok or err == nil, "round " .. i .. ": a message larger than the cap was received")
    if ok then error("round " .. i .. ": recv_bytes did not fail") end
    check(tostring(err):find("not enough memory"), "round " .. i .. ": the memory error, got " .. tostring(err))
    collectgarbage()
    if i == 1 then before = host.heap() end
  end
  local grown = host.heap() - before
  print(string.format("heap after the first failed receive %d bytes, after %d: %+d", before, ROUNDS, grown))
  check(grown < 4 * MiB, string.format("the C heap grew by %d bytes over %d failed receives", grown, ROUNDS - 1))
  check(host.wait(pid) == 0, "the sender's exit status")
  a:close()
end

-- 2. A message that fits once garbage is collected is received: Lua's
-- emergency collection runs, no spurious NOMEM.
do
  local a, b = assert(mpconn.pipe(false))
  local size = MiB + 12345
  local pid = host.sender(b:fileno(), 3, size)
  b:close()
  for i = 1, 3 do
    collectgarbage()
    collectgarbage("stop")
    local junk = {}
    while host.lua_bytes() < tonumber(os.getenv("MPCONN_LUA_CAP")) - size // 2 do
      junk[#junk + 1] = string.rep(tostring(#junk), 4096)
    end
    junk = nil -- garbage now: only a collection makes room for the message
    local m, err, code = a:recv_bytes()
    collectgarbage("restart")
    check(m and #m == size, "round " .. i .. ": expected the message, got " .. tostring(err) .. " " .. tostring(code))
  end
  check(host.wait(pid) == 0, "the sender's exit status")
  a:close()
end
check(host.alloc_is_ours(), "the state's allocator after receiving")
print("capped host: ok")
