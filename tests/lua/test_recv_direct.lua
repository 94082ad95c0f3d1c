-- The in-place receive of long messages (bindings/lua/mpconn_lua.i, "the
-- allocator hand-off"): from mpconn._recv_direct().min bytes a message is
-- read into the block that becomes its Lua string.  These tests check that
-- the path is taken when it should be (the counters make them able to
-- fail), that every byte arrives on both sides of the threshold and at
-- 16 MiB and 64 MiB, that it steps aside when the allocator was replaced
-- and when Lua declines the block, that failures in the middle of a payload
-- leave the connection exactly as the copying path does, and that several
-- Lua states in one process each get their own.
--
-- MPCONN_VALGRIND=1 (the lua.valgrind_recv_direct test runs this file under
-- valgrind --leak-check=full) leaves out the tests with child processes and
-- messages above 1 MiB, and the one that leaks by design (see below).
local H = require "harness"
local mpconn = require "mpconn"
local shim = require "mpconn_test_alloc" -- loaded after mpconn: finalized before it

local VALGRIND = os.getenv("MPCONN_VALGRIND") == "1"
local info0 = mpconn._recv_direct()
local MIN = info0.min
local HUGE = 1 << 40

local function bytes(n, salt)
  return string.rep(H.ALL256:sub(salt or 1) .. H.ALL256, n // 256 + 1):sub(1, n)
end

local function direct() return mpconn._recv_direct().direct end
local function copied() return mpconn._recv_direct().copied end

local function echo_pair() return H.echo_pair(mpconn) end

H.test("the in-place receive is on for this Lua, with a plausible string header", function()
  H.eq(_VERSION, "Lua 5.4", "the Lua the module is built for")
  H.ok(info0.enabled, "enabled (why not: " .. tostring(info0.why) .. ")")
  H.ok(info0.header >= 16 and info0.header <= 64, "header " .. tostring(info0.header))
  H.ok(MIN > 1024, "min above the stack buffer: " .. tostring(MIN))
  H.raises("min must be above 1024", mpconn._recv_direct, { min = 1024 })
end)

H.test("messages on both sides of the threshold arrive intact; only those from min bytes are built in place", function()
  local a, b = mpconn.pipe()
  for k, n in ipairs({ MIN - 1, MIN, MIN + 1, 1025, 2 * MIN + 3, 100000, MIN }) do
    local s = bytes(n, k)
    local before, cbefore = direct(), copied()
    H.eq(a:send_bytes(s), true, n .. " bytes: send")
    local got = b:recv_bytes()
    if got ~= s then H.eq(H.describe(got), H.describe(s), n .. " bytes") end
    H.eq(direct() - before, n >= MIN and 1 or 0, n .. " bytes: built in place")
    H.eq(copied(), cbefore, n .. " bytes: nothing declined")
  end
  H.ok(mpconn._recv_buffer_size() < MIN + 70000, "the staging buffer took only the shorter ones")
  -- With maxlength too, and at exactly maxlength.
  local s = bytes(MIN + 10, 9)
  local before = direct()
  a:send_bytes(s)
  H.eq(b:recv_bytes(MIN + 10), s, "maxlength = length")
  H.eq(direct() - before, 1, "with maxlength: built in place")
  a:send_bytes(s)
  H.fails("TOOLONG", "bad message length", b:recv_bytes(MIN + 9))
  H.eq(direct() - before, 1, "refused on the header: nothing allocated")
  a:close(); b:close()
end)

H.test("the threshold can be moved; above it messages are copied through the staging buffer", function()
  local a, b = mpconn.pipe()
  mpconn._recv_direct({ min = HUGE })
  local before = direct()
  local s = bytes(90000, 3)
  a:send_bytes(s)
  H.eq(b:recv_bytes(), s, "copied")
  H.eq(direct(), before, "not in place")
  H.ok(mpconn._recv_buffer_size() >= 90000, "staged")
  mpconn._recv_direct({ min = MIN })
  a:send_bytes(s)
  H.eq(b:recv_bytes(), s, "in place again")
  H.eq(direct(), before + 1, "counted")
  a:close(); b:close()
end)

H.test("a hand-off Lua declines is copied and its block freed (the self-check)", function()
  local a, b = mpconn.pipe()
  local d, c = direct(), copied()
  local s = bytes(MIN + 500, 5)
  mpconn._recv_direct({ test_miss = true })
  a:send_bytes(s)
  H.eq(b:recv_bytes(), s, "declined: still intact")
  H.eq(copied(), c + 1, "counted as copied")
  H.eq(direct(), d, "not counted as in place")
  a:send_bytes(s)
  H.eq(b:recv_bytes(), s, "the next one")
  H.eq(direct(), d + 1, "in place again (the miss was one-shot)")
  H.ok(mpconn._recv_direct().enabled, "still enabled")
  a:close(); b:close()
end)

H.test("a foreign allocator stacked on top turns the path off until it is gone", function()
  local a, b = mpconn.pipe()
  local s = bytes(MIN * 3, 7)
  H.eq(shim.wrap(), true, "wrapped")
  local d, c = direct(), copied()
  a:send_bytes(s)
  H.eq(b:recv_bytes(), s, "copied under a foreign allocator")
  H.eq(direct(), d, "not in place")
  H.eq(copied(), c, "not even tried (no block was offered)")
  H.ok(shim.calls() > 0, "the foreign allocator is in use")
  H.eq(shim.unwrap(), true, "unwrapped")
  a:send_bytes(s)
  H.eq(b:recv_bytes(), s, "in place again")
  H.eq(direct(), d + 1, "counted")
  a:close(); b:close()
end)

-- A raw writer on a one-way pipe: the test controls every byte and the end.
local function raw_pipe()
  local r, w = mpconn.pipe(false)
  local raw = assert(io.open("/proc/self/fd/" .. w:fileno(), "wb"))
  raw:setvbuf("no")
  w:close()
  return r, raw
end

-- Runs scenario(r, raw) with the threshold at min and returns its record.
local function with_min(min, scenario)
  mpconn._recv_direct({ min = min })
  local ok, rec = pcall(scenario)
  mpconn._recv_direct({ min = MIN })
  if not ok then error(rec, 0) end
  return rec
end

local function triple(...)
  local t = table.pack(...)
  return table.concat({ tostring(t[1]), tostring(t[2]), tostring(t[3]) }, " | ")
end

local N = MIN + 4000 -- fits a pipe buffer (64 KiB) with its header

H.test("end of file in the middle of a payload: the same result as the copying path, nothing left behind", function()
  local function scenario()
    local r, raw = raw_pipe()
    local d = direct()
    raw:write(mpconn.frame_header(N) .. bytes(N // 2))
    raw:close()
    local rec = { first = triple(r:recv_bytes()), second = triple(r:recv_bytes()),
      readable = tostring(r:is_readable()), direct = direct() - d }
    r:close()
    return rec
  end
  local copy, place = with_min(HUGE, scenario), with_min(MIN, scenario)
  H.match(place.first, "^nil | .* | %u+$", "nil, message, code")
  H.eq(place.first, copy.first, "first call")
  H.eq(place.second, copy.second, "second call")
  H.eq(place.readable, copy.readable, "readable afterwards")
  H.eq(place.direct, 0, "no string was made")
end)

H.test("a timeout before any payload byte keeps the message pending on both paths", function()
  local function scenario()
    local r, raw = raw_pipe()
    r:set_timeout(0.05)
    local s = bytes(N, 11)
    raw:write(mpconn.frame_header(N))
    local first = triple(r:recv_bytes())
    raw:write(s)
    local got = r:recv_bytes()
    local rec = { first = first, intact = tostring(got == s), direct = direct() }
    raw:write(mpconn.frame_header(3) .. "end")
    rec.next = triple(r:recv_bytes())
    raw:close(); r:close()
    return rec
  end
  local d0 = direct()
  local copy = with_min(HUGE, scenario)
  H.eq(copy.direct, d0, "copying path: not in place")
  local place = with_min(MIN, scenario)
  H.match(place.first, "^nil | .* | TIMEOUT$", "timeout")
  H.eq(place.first, copy.first, "first call")
  H.eq(place.intact, "true", "the message arrives whole after the timeout")
  H.eq(copy.intact, "true", "(copying path too)")
  H.eq(place.direct, d0 + 1, "in place on the retry")
  H.eq(place.next, copy.next, "the next message")
end)

H.test("a timeout in the middle of a payload breaks the connection as on the copying path", function()
  local function scenario()
    local r, raw = raw_pipe()
    r:set_timeout(0.05)
    local d = direct()
    raw:write(mpconn.frame_header(N) .. bytes(100))
    local rec = { first = triple(r:recv_bytes()) }
    raw:write(bytes(N - 100) .. mpconn.frame_header(3) .. "end")
    rec.second = triple(r:recv_bytes())
    rec.third = triple(r:recv_bytes())
    rec.direct = direct() - d
    raw:close(); r:close()
    return rec
  end
  local copy, place = with_min(HUGE, scenario), with_min(MIN, scenario)
  H.match(place.first, "^nil | .* | TIMEOUT$", "timeout")
  H.eq(place.first, copy.first, "first call")
  H.eq(place.second, copy.second, "second call")
  H.eq(place.third, copy.third, "third call")
  H.eq(place.direct, 0, "no string was made")
end)

H.test("a second Lua state in this process gets a hand-off of its own and closes cleanly", function()
  local code = [[
    local mpconn = require "mpconn"
    local a, b = mpconn.pipe()
    local s = string.rep("\0\1\2\255", 30000)
    a:send_bytes(s)
    local ok = b:recv_bytes() == s
    local i = mpconn._recv_direct()
    a:close(); b:close()
    return tostring(ok) .. " " .. tostring(i.enabled) .. " " .. i.direct
  ]]
  local d = direct()
  H.eq(shim.run(code), "true true 1", "in the new state")
  H.eq(shim.run(code), "true true 1", "and in another one after it was closed")
  H.eq(direct(), d, "this state's counter is its own")
  -- Closed with a foreign allocator stacked on top (loaded after mpconn, so
  -- finalized first and taken out before mpconn's wrapper).
  H.eq(shim.run([[
    local mpconn = require "mpconn"
    local shim = require "mpconn_test_alloc"
    shim.wrap()
    local a, b = mpconn.pipe()
    a:send_bytes(string.rep("y", 70000))
    local n = #b:recv_bytes()
    return n .. " " .. mpconn._recv_direct().direct
  ]]), "70000 0", "under a foreign allocator at close")
end)

if VALGRIND then
  H.skip("a foreign allocator stacked over mpconn's at lua_close", "leaks the hand-off's state by design")
else
  H.test("a foreign allocator stacked over mpconn's at lua_close: mpconn's stays, nothing crashes", function()
    -- The shim is loaded first, so at lua_close mpconn is finalized first,
    -- finds the shim on top and leaves its wrapper (the shim forwards to it)
    -- in place; the module is pinned, so the frees after dlclose still work.
    H.eq(shim.run([[
      local shim = require "mpconn_test_alloc"
      local mpconn = require "mpconn"
      shim.wrap()
      local a, b = mpconn.pipe()
      a:send_bytes(string.rep("z", 70000))
      local n = #b:recv_bytes()
      a:close(); b:close()
      return n .. " " .. mpconn._recv_direct().direct
    ]]), "70000 0", "closed")
  end)
end

if VALGRIND then
  H.skip("16 MiB and 64 MiB messages through an echo peer", "MPCONN_VALGRIND")
else
  H.test("16 MiB (every byte value) and the 64 MiB allocation step arrive intact; past the step they are copied", function()
    local c, finish = echo_pair()
    local function echo(s, what)
      H.eq(c:send_bytes(s), true, what .. ": send")
      local got, msg, code = c:recv_bytes()
      if got == nil then error(what .. ": " .. tostring(msg) .. " " .. tostring(code)) end
      if got ~= s then H.eq(H.describe(got), H.describe(s), what) end
    end
    local d = direct()
    echo(bytes(16 << 20, 1), "16 MiB")
    echo(bytes((16 << 20) + 1, 2), "16 MiB + 1")
    H.eq(direct(), d + 2, "built in place")
    local big = string.rep("\171", 64 << 20)
    echo(big, "64 MiB")
    H.eq(direct(), d + 3, "64 MiB (one allocation step): in place")
    echo(big .. "\0", "64 MiB + 1")
    H.eq(direct(), d + 3, "64 MiB + 1: the library's stepped buffer, copied")
    big = nil
    collectgarbage()
    local out, ok = finish()
    H.match(out, "ECHOED 4", "child output")
    H.ok(ok, "child exit status")
  end)
end

H.done()
