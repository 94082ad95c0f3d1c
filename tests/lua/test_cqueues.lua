-- mpconn.cqueues (issue 17): calls made in cqueues coroutines yield instead
-- of blocking.  One controller serves 200 concurrent stock CPython clients
-- (3.11 and 3.13, threads in 4 processes) with an authkey, 50 round trips
-- each, while a timer coroutine ticks; Lua clients in coroutines against a
-- stock CPython Listener and against a blocking mpconn Lua listener (values
-- and bytes, 0 B to 16 MiB, byte-exact); peers that stall mid-handshake or
-- mid-frame stop nobody else; a wrong key fails only its own coroutine.
local H = require "harness"
local ok_cq, cqueues = pcall(require, "cqueues")
if not ok_cq then
  print("SKIP: lua-cqueues is not installed (apt-get install lua-cqueues)")
  os.exit(0)
end
local socket = require "cqueues.socket"
local mpconn = require "mpconn"
local mq = require "mpconn.cqueues"

local monotime = cqueues.monotime
local KEY = "cq\0key\255"

-- Stock interpreters: the machine's python3 (3.11 here), 3.13 from pyenv.
local function pythons()
  local found, seen = {}, {}
  local root = io.popen("pyenv root 2>/dev/null"):read("l") or "/root/.pyenv"
  local cands = { os.getenv("MPCONN_STOCK_PYTHON") or "python3" }
  local p = io.popen("ls -d " .. H.q(root) .. "/versions/3.13* 2>/dev/null")
  for d in p:lines() do cands[#cands + 1] = d .. "/bin/python" end
  p:close()
  for _, exe in ipairs(cands) do
    local v = io.popen(H.q(exe) .. [[ -c "import sys; print('%d.%d' % sys.version_info[:2])" 2>/dev/null]]):read("l")
    if v and not seen[v] and (v == "3.11" or v == "3.13") then
      seen[v] = true
      found[#found + 1] = { exe = exe, version = v }
    end
  end
  return found
end
local PY = pythons()
local PEER = H.dir .. "/py_cq_peer.py"

-- A byte string of n bytes, every byte value, depending on seed.
local function pattern(n, seed)
  local base = {}
  for i = 0, 255 do base[#base + 1] = string.char((i * 7 + seed) % 256) end
  local s = table.concat(base)
  return string.rep(s, n // 256 + 1):sub(1, n)
end

-- A timer coroutine on cq: ticks every 10 ms until stop[1]; returns a table
-- with .ticks and .maxgap.
local function ticker(cq, stop)
  local t = { ticks = 0, maxgap = 0 }
  cq:wrap(function()
    local last = monotime()
    while not stop[1] do
      cqueues.sleep(0.01)
      local now = monotime()
      if now - last > t.maxgap then t.maxgap = now - last end
      last = now
      t.ticks = t.ticks + 1
    end
  end)
  return t
end

local function run_loop(cq)
  local ok, err = cq:loop()
  if not ok then error("cqueues loop: " .. tostring(err)) end
end

if #PY == 0 then
  H.skip("200 CPython clients", "neither CPython 3.11 nor 3.13 found")
else
  H.test("one controller serves 200 concurrent CPython clients (authkey, 50 round trips each) while a timer ticks", function()
    local NPROC_PER, THREADS, ROUNDS = 4 // #PY, 50, 50
    local total = NPROC_PER * #PY * THREADS
    local l = assert(mq.listen("127.0.0.1:0", { authkey = KEY, backlog = 256, timeout = 60 }))
    local procs = {}
    for _, py in ipairs(PY) do
      for _ = 1, NPROC_PER do
        procs[#procs + 1] = { py = py, p = H.spawn(string.format("%s %s clients %s %s %d %d", H.q(py.exe),
          H.q(PEER), H.q(l.address), H.hex(KEY), THREADS, ROUNDS)) }
      end
    end
    local cq = cqueues.new()
    local stop, failures = {}, {}
    local served, open, maxopen, msgs = 0, 0, 0, 0
    local tick = ticker(cq, stop)
    local function finished()
      served = served + 1
      if served == total then stop[1] = true end
    end
    cq:wrap(function()
      for _ = 1, total do
        local c, e, code = l:accept(60)
        if not c then
          failures[#failures + 1] = "accept: " .. tostring(e) .. " " .. tostring(code)
          stop[1] = true
          return
        end
        cq:wrap(function()
          open = open + 1
          if open > maxopen then maxopen = open end
          c:set_timeout(60)
          while true do
            local s, err, cd = c:recv_bytes()
            if s == nil then
              if cd ~= "EOF" then failures[#failures + 1] = "recv: " .. tostring(err) .. " " .. tostring(cd) end
              break
            end
            local ok, err2
            if s:sub(1, 5) == "ping " then
              ok, err2 = c:send_bytes("pong " .. s:sub(6))
            else
              local v = assert(mpconn.decode(s))
              ok, err2 = c:send(mpconn.tuple { "pong", v[2], v[3] })
            end
            if not ok then failures[#failures + 1] = "send: " .. tostring(err2); break end
            msgs = msgs + 1
          end
          open = open - 1
          c:close()
          finished()
        end)
      end
    end)
    local t0 = monotime()
    run_loop(cq)
    local elapsed = monotime() - t0
    l:close()
    for _, pr in ipairs(procs) do
      local out, ok = H.finish(pr.p)
      H.match(out, "PY%-OK " .. THREADS, "CPython " .. pr.py.version .. " clients")
      H.ok(ok, "python exit status")
    end
    H.eq(#failures, 0, "failures (" .. tostring(failures[1]) .. ")")
    H.eq(served, total, "clients served")
    H.eq(msgs, total * ROUNDS, "round trips")
    print(string.format("       %d clients (%s), %d round trips in %.2f s; %d at once at most; timer ticked %d times, longest gap %.3f s",
      total, table.concat((function() local v = {} for i, p in ipairs(PY) do v[i] = p.version end return v end)(), "+"),
      msgs, elapsed, maxopen, tick.ticks, tick.maxgap))
    H.ok(maxopen >= THREADS, "clients served at once (each process's threads wait for one another after connecting)")
    H.ok(tick.ticks >= 10, "the timer ticked")
    H.ok(tick.maxgap < 2.0, "the loop never stopped for long (gap " .. tick.maxgap .. " s)")
  end)
end

-- Lua clients in coroutines against a listener at address: two in bytes
-- mode (0 B .. 16 MiB), two in values mode, one with a wrong key (when
-- badkey), all at once, with a timer ticking.
local SIZES = { 0, 1, 255, 1024, 1025, 65536, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, 16 * 1024 * 1024 }
local VALUES = {
  "hello", "", 42, math.mininteger, 1.5, -0.0, true, false, "caf\xc3\xa9",
  "\xff\x00bytes", { 1, 2, { 3, "four" } }, { a = 1, b = { "x", "y" } },
  mpconn.tuple { 1, "two", 3.0 }, mpconn.list {}, mpconn.dict {},
  string.rep("v", 1024 * 1024),
}
local RECV_OPTS = { tuple = "marked", bytes = "marked" }

local function lua_clients(address, badkey, what)
  local cq = cqueues.new()
  local stop, failures, done = {}, {}, 0
  local tick = ticker(cq, stop)
  local n = 4 + (badkey and 1 or 0)
  local function finish() done = done + 1; if done == n then stop[1] = true end end
  local function check(cond, msg) if not cond then failures[#failures + 1] = msg end return cond end
  for k = 1, 2 do
    cq:wrap(function()
      local c, e, code = mq.connect(address, { authkey = KEY, timeout = 60, io_timeout = 60 })
      if check(c, "connect: " .. tostring(e) .. " " .. tostring(code)) then
        assert(c:send_bytes("bytes"))
        for _, size in ipairs(SIZES) do
          local msg = pattern(size, k + size)
          local ok, err = c:send_bytes(msg)
          if not check(ok, "send " .. size .. ": " .. tostring(err)) then break end
          local got, err2, cd = c:recv_bytes()
          if not check(got == msg, string.format("%s bytes client %d, %d bytes: got %s %s %s", what, k, size,
            got and ("#" .. #got) or "nil", tostring(err2), tostring(cd))) then break end
        end
        c:close()
      end
      finish()
    end)
  end
  for k = 1, 2 do
    cq:wrap(function()
      local c, e, code = mq.connect(address, { authkey = KEY, timeout = 60, io_timeout = 60 })
      if check(c, "connect: " .. tostring(e) .. " " .. tostring(code)) then
        assert(c:send_bytes("values"))
        for i, v in ipairs(VALUES) do
          local ok, err = c:send(v)
          if not check(ok, "send value " .. i .. ": " .. tostring(err)) then break end
          local got, err2, cd = c:recv(RECV_OPTS)
          if not check(err2 == nil and mpconn.repr(got) == mpconn.repr(v), string.format("%s values client %d, value %d: got %s (%s %s)",
            what, k, i, mpconn.repr(got, 80) or "?", tostring(err2), tostring(cd))) then break end
        end
        -- None: a lone nil.
        assert(c:send(nil))
        local got, err2 = c:recv()
        check(got == nil and err2 == nil, "None comes back as a lone nil")
        c:close()
      end
      finish()
    end)
  end
  if badkey then
    cq:wrap(function()
      local c, e, code = mq.connect(address, { authkey = "wrong key", timeout = 60 })
      check(c == nil and code == "AUTH", "wrong key: expected nil, msg, AUTH, got " .. tostring(c) .. " "
        .. tostring(e) .. " " .. tostring(code))
      check(type(e) == "string" and #e > 0, "a message")
      finish()
    end)
  end
  run_loop(cq)
  H.eq(#failures, 0, "failures (" .. tostring(failures[1]) .. ")")
  H.eq(done, n, "coroutines done")
  H.ok(tick.ticks >= 5, "the timer ticked meanwhile (" .. tick.ticks .. ")")
  print(string.format("       %s: timer ticked %d times, longest gap %.3f s", what, tick.ticks, tick.maxgap))
end

for _, py in ipairs(PY) do
  H.test("Lua clients in coroutines against a stock CPython " .. py.version .. " Listener: bytes 0 B..16 MiB, values, a wrong key", function()
    local p = H.spawn(string.format("%s %s listen 127.0.0.1:0 %s 5", H.q(py.exe), H.q(PEER), H.hex(KEY)))
    local address = p:read("l")
    H.ok(address and address:find(":%d+$"), "listener address " .. tostring(address))
    lua_clients(address, true, "CPython " .. py.version)
    local out, ok = H.finish(p)
    H.match(out, "PY%-OK 5", "python output")
    H.ok(ok, "python exit status")
  end)
end

H.test("Lua clients in coroutines against a blocking mpconn Lua listener (another process)", function()
  local p = H.spawn(string.format("%s %s/cq_blocking_peer.lua %s 4", H.lua, H.dir, H.hex(KEY)))
  local address = p:read("l")
  H.ok(address and address:find(":%d+$"), "listener address " .. tostring(address))
  lua_clients(address, false, "blocking Lua listener")
  local out, ok = H.finish(p)
  H.match(out, "LUA%-OK 4", "peer output")
  H.ok(ok, "peer exit status")
end)

local function port_of(address) return tonumber(address:match(":(%d+)$")) end

H.test("a peer stalled mid-handshake or mid-frame stops no other coroutine; each resumes", function()
  local cq = cqueues.new()
  local stop, failures, log = {}, {}, {}
  local tick = ticker(cq, stop)
  local function check(cond, msg) if not cond then failures[#failures + 1] = msg end return cond end
  local lk = assert(mq.listen("127.0.0.1:0", { authkey = KEY, handshake_timeout = 3 }))
  local lp = assert(mq.listen("127.0.0.1:0"))
  -- A raw server that accepts and never sends its challenge.
  local mute = assert(socket.listen("127.0.0.1", 0))
  local _, _, mute_port = mute:localname()
  local good_done_at, hs_stall_at, frame_done_at
  local pending = 6
  local function finish() pending = pending - 1; if pending == 0 then stop[1] = true end end
  local function echo(c)
    while true do
      local s = c:recv_bytes()
      if not s then break end
      c:send_bytes(s)
    end
  end
  -- Server side of lk: accepts two clients (the stalled raw one, the good one).
  cq:wrap(function()
    for _ = 1, 2 do
      local c = assert(lk:accept(20))
      cq:wrap(function()
        local s, e, code = c:recv_bytes()
        if s == nil and code == "TIMEOUT" then
          hs_stall_at = monotime()
          log[#log + 1] = "stalled handshake timed out"
        elseif s then
          c:send_bytes(s)
          echo(c)
        else
          check(false, "lk handler: " .. tostring(e) .. " " .. tostring(code))
        end
        c:close()
        finish()
      end)
    end
  end)
  -- Server side of lp: the raw client that stalls mid-frame, then a good one.
  cq:wrap(function()
    for _ = 1, 2 do
      local c = assert(lp:accept(20))
      cq:wrap(function()
        local s, e, code = c:recv_bytes()
        if s and #s == 100 then
          frame_done_at = monotime()
          check(s == pattern(100, 9), "the stalled frame arrived whole and exact")
        elseif s then
          c:send_bytes(s)
          echo(c)
        else
          check(false, "lp handler: " .. tostring(e) .. " " .. tostring(code))
        end
        c:close()
        finish()
      end)
    end
  end)
  -- The raw peers (cqueues sockets): one connects to lk and says nothing;
  -- one sends lp 10 of a 100-byte frame, waits 1.5 s, sends the rest.
  cq:wrap(function()
    local s = assert(socket.connect("127.0.0.1", port_of(lk.address)))
    assert(s:connect(10))
    cqueues.sleep(5)
    s:close()
    finish()
  end)
  cq:wrap(function()
    local s = assert(socket.connect("127.0.0.1", port_of(lp.address)))
    s:setmode("bn", "bn")
    local frame = mpconn.frame_header(100) .. pattern(100, 9)
    assert(s:write(frame:sub(1, 14)))
    assert(s:flush())
    cqueues.sleep(1.5)
    assert(s:write(frame:sub(15)))
    assert(s:flush())
    cqueues.sleep(0.5)
    s:close()
  end)
  -- Good clients, started while both raw peers stall.
  cq:wrap(function()
    cqueues.sleep(0.1)
    local a = assert(mq.connect(lk.address, { authkey = KEY, timeout = 10 }))
    local b = assert(mq.connect(lp.address, { timeout = 10 }))
    for i = 1, 20 do
      assert(a:send_bytes("a" .. i)); check(a:recv_bytes() == "a" .. i, "echo a")
      assert(b:send_bytes("b" .. i)); check(b:recv_bytes() == "b" .. i, "echo b")
    end
    good_done_at = monotime()
    a:close(); b:close()
    finish()
  end)
  -- A client whose server never sends the challenge: TIMEOUT for it only.
  cq:wrap(function()
    local t0 = monotime()
    local c, e, code = mq.connect("127.0.0.1:" .. mute_port, { authkey = KEY, timeout = 1 })
    check(c == nil and code == "TIMEOUT", "mute server: expected TIMEOUT, got " .. tostring(code) .. " " .. tostring(e))
    check(monotime() - t0 < 5, "within its deadline")
    finish()
  end)
  cq:wrap(function() local s = mute:accept(); cqueues.sleep(2); if s then s:close() end end)
  run_loop(cq)
  mute:close(); lk:close(); lp:close()
  H.eq(#failures, 0, "failures (" .. tostring(failures[1]) .. ")")
  H.ok(good_done_at and hs_stall_at and good_done_at < hs_stall_at, "good clients finished while the handshake stalled")
  H.ok(frame_done_at and good_done_at < frame_done_at, "good clients finished while the frame stalled")
  H.ok(tick.ticks >= 50, "the timer ticked (" .. tick.ticks .. ")")
  H.ok(tick.maxgap < 1.0, "no long gap (" .. tick.maxgap .. ")")
end)

H.test("deadlines: set_timeout, poll, wait, accept time out in coroutines; wantread with set_timeout(0)", function()
  local cq = cqueues.new()
  local results = {}
  cq:wrap(function()
    local a, b = assert(mq.pipe())
    a:set_timeout(0.05)
    local t0 = monotime()
    results.recv = { a:recv_bytes() }
    results.recv_dt = monotime() - t0
    results.poll = a:poll(0.05)
    results.wait = mq.wait({ a, b }, 0.05)
    assert(b:send_bytes("x"))
    results.wait2 = mq.wait({ a, b }, 1)
    results.poll2 = a:poll()
    b:set_timeout(0)
    results.nb = { b:recv_bytes() }
    results.got = a:recv_bytes()
    local l = assert(mq.listen("127.0.0.1:0"))
    results.accept = { l:accept(0.05) }
    l:set_timeout(0)
    results.accept_nb = { l:accept() }
    l:close(); a:close(); b:close()
    H.raises("connection is closed", a.recv_bytes, a)
  end)
  run_loop(cq)
  H.fails("TIMEOUT", "timed out", table.unpack(results.recv))
  H.ok(results.recv_dt < 2, "quickly")
  H.eq(results.poll, false, "poll timed out")
  H.eq(#results.wait, 0, "wait timed out")
  H.eq(#results.wait2, 1, "one ready")
  H.eq(results.poll2, true, "poll")
  H.fails("AGAIN", "^wantread$", table.unpack(results.nb))
  H.eq(results.got, "x", "message")
  H.fails("TIMEOUT", nil, table.unpack(results.accept))
  H.fails("AGAIN", "^wantread$", table.unpack(results.accept_nb))
end)

H.done()
