-- The non-blocking mode of the plain module (issue 17): set_timeout(0) on
-- connections and listeners, nil, "wantread"/"wantwrite", "AGAIN" returns,
-- the cqueues pollable methods (pollfd, events, timeout), pending, flush,
-- the nonblocking option of connect/listen/pipe.  Single process: both ends
-- are driven by hand, and no call here may block (every loop is bounded).
local H = require "harness"
local mpconn = require "mpconn"

local function nb_pair(opts)
  local a, b = assert(mpconn.pipe(true, opts))
  a:set_timeout(0)
  b:set_timeout(0)
  return a, b
end

-- Calls fn() until it returns something other than a want; flushes the
-- other connections meanwhile.  Bounded.
local function drive(what, fn, ...)
  local others = { ... }
  for _ = 1, 100000 do
    local r, e, code = fn()
    if not (r == nil and code == "AGAIN") then return r, e, code end
    H.ok(e == "wantread" or e == "wantwrite", what .. ": want string")
    for _, o in ipairs(others) do o:flush() end
  end
  error(what .. ": no progress")
end

H.test("set_timeout(0): a receive that would wait returns nil, 'wantread', 'AGAIN'", function()
  local a, b = nb_pair()
  H.eq(a:is_blocking(), false, "non-blocking")
  H.fails("AGAIN", "^wantread$", a:recv_bytes())
  H.fails("AGAIN", "^wantread$", a:recv())
  H.eq(a:events(), "r", "events")
  H.eq(a:pollfd(), a:fileno(), "pollfd is the descriptor")
  H.eq(a:timeout(), nil, "no deadline")
  H.eq(a:pending(), false, "nothing buffered")
  H.eq(a:flush(), true, "nothing in progress")
  H.eq(b:send_bytes("hi"), true, "send")
  H.eq(a:recv_bytes(), "hi", "then the message")
  H.eq(b:send({ 1, "two" }), true, "send a value")
  local v = a:recv()
  H.eq(v[2], "two", "value")
  -- Back to blocking with a deadline: as before.
  a:set_timeout(0.05)
  H.eq(a:is_blocking(), true, "blocking again")
  H.fails("TIMEOUT", nil, a:recv_bytes())
  a:set_timeout(nil); a:set_timeout(math.huge)
  a:close(); b:close()
end)

H.test("a message of every size arrives whole, never split, through sends that queue", function()
  local sizes = { 0, 1, 1024, 1025, 70000, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, 6000000 }
  for _, ra in ipairs({ false, true }) do
    local a, b = nb_pair({ read_ahead = ra })
    for i, n in ipairs(sizes) do
      local msg = string.rep(string.char(i % 256, (i * 7) % 256, 0, 255), n // 4 + 1):sub(1, n)
      H.eq(a:send_bytes(msg), true, "send accepted whole (queued)")
      local got = drive("recv " .. n, function() return b:recv_bytes() end, a)
      H.eq(#got, n, "length")
      H.ok(got == msg, "byte-exact " .. n)
      H.eq(drive("flush", function() return a:flush() end), true, "flushed")
    end
    a:close(); b:close()
  end
end)

H.test("wantwrite: a send behind queued output takes nothing; events 'w'; flush finishes", function()
  local a, b = nb_pair()
  local big = string.rep("z", 8 * 1024 * 1024)
  H.eq(a:send_bytes(big), true, "first send accepted (its rest queued)")
  H.eq(a:events(), "w", "queued output waits for writability")
  H.fails("AGAIN", "^wantwrite$", a:send_bytes("next"))
  H.fails("AGAIN", "^wantwrite$", a:send_many({ "x", "y" }))
  H.fails("AGAIN", "^wantwrite$", a:send("v"))
  -- A receive with output queued: "wantread", events "rw".
  H.fails("AGAIN", "^wantread$", a:recv_bytes())
  H.eq(a:events(), "rw", "both")
  H.eq(drive("recv big", function() return b:recv_bytes() end, a), big, "the big one, whole")
  H.eq(drive("flush", function() return a:flush() end), true, "flushed")
  H.eq(a:send_many({ "x", "y" }), true, "now accepted")
  H.eq(b:recv_bytes(), "x", "x")
  H.eq(b:recv_bytes(), "y", "y")
  a:close(); b:close()
end)

H.test("pending() is true while a whole message is buffered (read_ahead)", function()
  local a, b = nb_pair({ read_ahead = true })
  H.eq(a:send_many({ "one", "two", "three" }), true, "three at once")
  H.eq(b:pending(), false, "nothing read yet")
  H.eq(drive("recv", function() return b:recv_bytes() end), "one", "one")
  H.eq(b:pending(), true, "two is buffered")
  H.eq(b:recv_bytes(), "two", "two")
  H.eq(b:recv_bytes(), "three", "three")
  H.eq(b:pending(), false, "drained")
  a:close(); b:close()
end)

H.test("maxlength in non-blocking mode: TOOLONG from the header", function()
  local a, b = nb_pair()
  H.eq(a:send_bytes(string.rep("q", 3000)), true, "send")
  H.fails("TOOLONG", nil, drive("recv", function() return b:recv_bytes(100) end))
  local c, d = nb_pair()
  H.eq(c:send_bytes(string.rep("q", 3000)), true, "send")
  H.eq(#drive("recv", function() return d:recv_bytes(3000) end), 3000, "within maxlength")
  a:close(); b:close(); c:close(); d:close()
end)

H.test("leaving non-blocking mode with work in progress raises", function()
  local a, b = nb_pair()
  H.eq(a:send_bytes(string.rep("z", 8 * 1024 * 1024)), true, "queued")
  H.raises("set_timeout:.*", a.set_timeout, a, nil)
  drive("recv", function() return b:recv_bytes() end, a)
  drive("flush", function() return a:flush() end)
  a:set_timeout(nil)
  H.eq(a:is_blocking(), true, "now it may")
  a:close(); b:close()
end)

for _, kind in ipairs({ "tcp", "unix" }) do
  H.test("listener set_timeout(0), nonblocking connect, handshake through flush (" .. kind .. ")", function()
    local l = assert(mpconn.listen(H.address(kind), { authkey = "key" }))
    l:set_timeout(0)
    H.eq(l:is_blocking(), false, "listener non-blocking")
    H.eq(l:pollfd(), l:fileno(), "pollfd"); H.eq(l:events(), "r", "events"); H.eq(l:timeout(), nil, "timeout")
    H.fails("AGAIN", "^wantread$", l:accept())
    local c = assert(mpconn.connect(l.address, { authkey = "key", nonblocking = true }))
    H.eq(c:is_blocking(), false, "client non-blocking")
    local s = drive("accept", function() return l:accept() end)
    H.eq(s:is_blocking(), false, "accepted connection non-blocking")
    local done = 0
    for _ = 1, 1000 do
      local r1, e1 = c:flush()
      local r2, e2 = s:flush()
      H.ok(r1 or e1 == "wantread" or e1 == "wantwrite", "client flush: " .. tostring(e1))
      H.ok(r2 or e2 == "wantread" or e2 == "wantwrite", "server flush: " .. tostring(e2))
      if r1 and r2 then done = 1; break end
    end
    H.eq(done, 1, "handshake done")
    H.eq(c:send("hello"), true, "send")
    H.eq(drive("recv", function() return s:recv() end), "hello", "recv")
    -- A recv on a connection whose handshake is in progress drives it.
    local c2 = assert(mpconn.connect(l.address, { authkey = "key", nonblocking = true }))
    local s2 = drive("accept", function() return l:accept() end)
    H.eq(drive("send", function() return c2:send_bytes("first") end, s2), true, "queued behind the handshake")
    H.eq(drive("recv", function() return s2:recv_bytes() end, c2), "first", "the handshake, then the message")
    -- A wrong key: AUTH on the connection's own call; the listener goes on.
    local c3 = assert(mpconn.connect(l.address, { authkey = "wrong", nonblocking = true }))
    local s3 = drive("accept", function() return l:accept() end)
    local r3, m3, code3
    for _ = 1, 1000 do
      local r1, e1, k1 = c3:flush()
      r3, m3, code3 = s3:recv_bytes()
      if code3 ~= "AGAIN" and k1 ~= "AGAIN" then
        H.fails("AUTH", nil, r1, e1, k1, "client flush")
        break
      end
    end
    H.fails("AUTH", nil, r3, m3, code3, "server recv")
    H.fails("AGAIN", "^wantread$", l:accept())
    l:set_timeout(0.05)
    H.eq(l:is_blocking(), true, "listener blocking again")
    H.fails("TIMEOUT", nil, l:accept())
    for _, o in ipairs({ c, s, c2, s2, c3, s3, l }) do o:close() end
  end)
end

H.test("a refused nonblocking connect reports OS from flush", function()
  local l = assert(mpconn.listen("127.0.0.1:0"))
  local addr = l.address
  l:close()
  local c, m, code = mpconn.connect(addr, { nonblocking = true })
  if c then
    local r, e, k = drive("flush", function() return c:flush() end)
    H.fails("OS", "refused", r, e, k)
    c:close()
  else
    H.fails("OS", "refused", c, m, code)
  end
end)

H.test("events/pollfd/pending/flush on a closed object raise", function()
  local a, b = nb_pair()
  a:close()
  for _, name in ipairs({ "pollfd", "events", "timeout", "pending", "flush", "is_blocking" }) do
    H.raises(name .. ": connection is closed", a[name], a)
  end
  H.raises("option nonblocking", mpconn.pipe, true, { nonblocking = 1 })
  b:close()
end)

H.done()
