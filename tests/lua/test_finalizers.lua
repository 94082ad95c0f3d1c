-- Finalizers that run in the middle of a call (issue 14, items 1 and 2).
-- Any Lua allocation may run a GC step, and the step may run __gc
-- metamethods: Lua code that closes, receives on or sends on the very
-- connection the interrupted call is using.  The collector is set so that
-- the first allocation after arm() runs the armed finalizer about half the
-- time, so each case below runs the finalizer inside the call many times.
-- Memory errors (use after free) show under valgrind (lua.valgrind_finalizers
-- runs this file under memcheck); what shows without it is checked here:
-- the documented "connection is closed" error, and no message duplicated or
-- lost.
local H = require "harness"
local mpconn = require "mpconn"

local ROUNDS = tonumber(os.getenv("MPCONN_FIN_ROUNDS") or "") or 200
local MESSAGES = tonumber(os.getenv("MPCONN_FIN_MESSAGES") or "") or 10000

-- Every allocation runs a whole collection (pause minimal, steps of 1 GiB):
-- the first allocation after arm() runs the armed finalizer.
local function aggressive() collectgarbage("incremental", 1, 1000, 30) end
-- A collection always under way in small steps: finalizers run at
-- allocations anywhere (for the stress test, whose heap is larger).
local function busy() collectgarbage("incremental", 1, 100, 8) end
local function normal() collectgarbage("incremental", 200, 100, 13) end

-- Makes an unreachable object whose finalizer calls f.
local function arm(f) setmetatable({}, { __gc = f }) end

-- Runs fn(args(a, b)) `ROUNDS` times on a fresh pair with a finalizer
-- armed to run fin(a, b) (closing(x) makes one that closes x(a, b));
-- check(ok, result, fired_inside, a, b) judges each outcome.  A full collection first runs every finalizer already pending
-- (older connections'), so the armed one is the next; fn is called straight
-- through pcall, so its first allocation is the first one after arm().
-- Returns how often the finalizer ran inside the call.
local function around(setup, fn, args, fin, check)
  -- A frame this large keeps room on the Lua stack after a collection
  -- shrinks it (to twice what is in use), so entering fn does not grow the
  -- stack (which would run a collection before fn starts).
  local _01, _02, _03, _04, _05, _06, _07, _08, _09, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, _20
  local _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32, _33, _34, _35, _36, _37, _38, _39, _40
  local inside = 0
  for _ = 1, ROUNDS do
    local a, b = mpconn.pipe()
    if setup then setup(a, b) end
    local p1, p2, p3 = args(a, b)
    local phase = "before"
    local fired
    aggressive() -- first: the collection below leaves the debt by these settings
    collectgarbage()
    arm(function() fired = phase; fin(a, b) end)
    phase = "call"
    local ok, r = pcall(fn, p1, p2, p3)
    phase = "after"
    normal()
    if fired == "call" then inside = inside + 1 end
    check(ok, r, fired == "call", a, b)
    a:close(); b:close()
  end
  collectgarbage()
  return inside
end

local function closing(victim) return function(a, b) victim(a, b):close() end end

local function closed_error(what)
  return function(ok, r, fired)
    if not ok then H.match(tostring(r), what .. ": connection is closed", "the error of a closed connection") end
    if fired then H.ok(not ok, what .. " went on with a connection closed under it") end
  end
end

H.test("recv: a finalizer closing the connection at the holder's allocation gives 'closed'", function()
  local long = string.rep("v", 200)
  local n = around(function(a) a:send(long) end, mpconn.Connection.recv, function(_, b) return b end,
    closing(function(_, b) return b end), closed_error("recv"))
  H.ok(n > 0, "the finalizer ran inside recv (" .. n .. " times)")
end)

H.test("send: a finalizer closing the connection at the holder's allocation gives 'closed'", function()
  local n = around(nil, mpconn.Connection.send, function(a) return a, { 1, 2, 3 } end,
    closing(function(a) return a end), closed_error("send"))
  H.ok(n > 0, "the finalizer ran inside send (" .. n .. " times)")
end)

H.test("recv_bytes: a finalizer closing the connection: the message, or the error of a closed connection", function()
  local long = string.rep("m", 100) -- a long string: always a new allocation
  local n = around(function(a) a:send_bytes(long) end, mpconn.Connection.recv_bytes,
    function(_, b) return b end, closing(function(_, b) return b end), function(ok, r)
      -- Closed before the message was taken: the error; after: the message.
      if ok then H.eq(r, long, "the message")
      else H.match(tostring(r), "recv_bytes: connection is closed", "the error of a closed connection") end
    end)
  H.ok(n > 0, "the finalizer ran inside recv_bytes (" .. n .. " times)")
end)

H.test("send_many over 256 messages: a finalizer closing the connection at the array's allocation", function()
  local list = {}
  for i = 1, 300 do list[i] = "m" .. i end
  local n = around(nil, mpconn.Connection.send_many, function(a) return a, list end,
    closing(function(a) return a end), closed_error("send_many"))
  H.ok(n > 0, "the finalizer ran inside send_many (" .. n .. " times)")
end)

H.test("wait: a finalizer closing a connection while the arrays are made", function()
  local n = around(function(a) a:send_bytes("x") end, mpconn.wait, function(_, b) return { b }, 0 end,
    closing(function(_, b) return b end),
    function(ok, r, fired)
      if not ok then H.match(tostring(r), "connection 1 is closed", "wait's error") end
      if fired then H.ok(not ok, "wait went on with a connection closed under it") end
    end)
  H.ok(n > 0, "the finalizer ran inside wait (" .. n .. " times)")
end)

H.test("deliver_challenge and answer_challenge with options: closed while the options are made", function()
  for _, leg in ipairs({ "deliver_challenge", "answer_challenge" }) do
    local n = around(nil, mpconn.Connection[leg], function(_, b) return b, "key", { timeout = 0.001 } end,
      closing(function(_, b) return b end), function(ok, r, fired)
        if not ok then H.match(tostring(r), "connection is closed", leg .. "'s error") end
        if fired then H.ok(not ok, leg .. " went on with a connection closed under it") end
      end)
    H.ok(n > 0, "the finalizer ran inside " .. leg .. " (" .. n .. " times)")
  end
end)

H.test("a finalizer receiving on the same connection gets the next message, never the same one", function()
  local m1, m2 = string.rep("1", 100), string.rep("2", 100)
  for _, how in ipairs({ "recv_bytes", "recv" }) do
    local inner
    local n = around(function(a)
      inner = nil
      if how == "recv" then a:send(m1); a:send(m2) else a:send_bytes(m1); a:send_bytes(m2) end
    end, mpconn.Connection[how], function(_, b) return b end,
      function(_, b) inner = b[how](b) end,
      function(ok, r, _, _, b)
        H.ok(ok, how .. " raised: " .. tostring(r))
        if inner == nil then inner = b[how](b) end
        local got = { r, inner }
        table.sort(got)
        H.eq(got[1], m1, how .. ": first message (outer " .. r:sub(1, 1) .. ", inner " .. inner:sub(1, 1) .. ")")
        H.eq(got[2], m2, how .. ": second message")
      end)
    H.ok(n > 0, "the finalizer ran inside " .. how .. " (" .. n .. " times)")
  end
end)

H.test("a method called with a nil self says 'bad self'", function()
  local a, b = mpconn.pipe()
  for _, m in ipairs({ "fileno", "poll", "peer", "buffered", "set_timeout", "detach", "close",
                       "is_readable", "is_writable", "recv_bytes", "send_bytes", "recv", "send" }) do
    H.raises("bad self", a[m])
  end
  a:close(); b:close()
end)

-- The stress test: MESSAGES numbered messages as bytes (a -> b) and as
-- values (c -> d), received by the main loop and by finalizers that run in
-- the middle of its calls; other finalizers send more messages on the same
-- connections and close a third pair the loop keeps using.  Every message
-- sent must be received exactly once.
H.test("finalizers that receive, send and close in the middle of calls: no message duplicated or lost", function()
  -- The receiving ends time out: a finalizer run between poll and recv may
  -- have taken the message that poll saw.
  local a, b = mpconn.pipe(true, { io_timeout = 0.001 })
  local c, d = mpconn.pipe(true, { io_timeout = 0.001 })
  local x, y = mpconn.pipe()
  local sent, got, errors = {}, {}, {}
  local extra = 0
  local function record(m, err, code)
    if m == nil then
      if code and code ~= "TIMEOUT" then errors[#errors + 1] = "recv: " .. tostring(err) end
      return
    end
    if got[m] then errors[#errors + 1] = "duplicate " .. tostring(m) end
    got[m] = true
  end
  local function fin_recv()
    local ok, err = pcall(function()
      if b:poll(0) then record(b:recv_bytes()) end
      if d:poll(0) then record(d:recv()) end
    end)
    if not ok then errors[#errors + 1] = "finalizer recv: " .. tostring(err) end
  end
  local function fin_send()
    extra = extra + 1
    local m = "F" .. extra
    local ok, err = pcall(function()
      assert(a:send_bytes(m))
      sent[m] = true
      assert(c:send("V" .. m))
      sent["V" .. m] = true
    end)
    if not ok then errors[#errors + 1] = "finalizer send: " .. tostring(err) end
  end
  local function fin_close() x:close() end
  local fins = { fin_recv, fin_send, fin_close, fin_recv }
  local function drain()
    while b:poll(0) do record(b:recv_bytes()) end
    while d:poll(0) do record(d:recv()) end
  end
  busy()
  local closed_seen = 0
  for i = 1, MESSAGES do
    local m = string.format("message %d %s", i, string.rep("-", i % 50))
    arm(fins[i % #fins + 1])
    assert(a:send_bytes(m))
    sent[m] = true
    arm(fins[(i + 1) % #fins + 1])
    assert(c:send("V" .. m))
    sent["V" .. m] = true
    arm(fins[(i + 2) % #fins + 1])
    if b:poll(0) then record(b:recv_bytes()) end
    arm(fins[(i + 3) % #fins + 1])
    if d:poll(0) then record(d:recv()) end
    -- The third pair: closed by finalizers now and then.
    arm(fins[(i + 4) % #fins + 1])
    local ok, err = pcall(function() assert(x:send_bytes("ping")); return y:recv_bytes() end)
    if not ok then
      H.match(tostring(err), "connection is closed", "the third pair's error")
      closed_seen = closed_seen + 1
      y:close()
      x, y = mpconn.pipe()
    end
    if i % 64 == 0 then drain() end
  end
  normal()
  collectgarbage()
  collectgarbage()
  drain()
  H.eq(#errors, 0, "errors: " .. table.concat(errors, "; ", 1, math.min(#errors, 5)))
  local missing, nsent = {}, 0
  for m in pairs(sent) do
    nsent = nsent + 1
    if not got[m] then missing[#missing + 1] = m end
  end
  for m in pairs(got) do H.ok(sent[m], "received but never sent: " .. tostring(m)) end
  H.eq(#missing, 0, "messages lost (" .. table.concat(missing, ", ", 1, math.min(#missing, 5)) .. ")")
  H.ok(nsent >= 2 * MESSAGES, "sent " .. nsent)
  H.ok(extra > 0, "finalizers sent " .. extra .. " messages")
  H.ok(closed_seen > 0, "the third pair was closed under the loop " .. closed_seen .. " times")
  a:close(); b:close(); c:close(); d:close(); x:close(); y:close()
end)

H.done()
