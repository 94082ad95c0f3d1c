-- The per-message methods (send_bytes, send_many, recv_bytes) are C
-- functions with a fast path; these tests pin down that they behave exactly
-- as documented on every path: the stack buffer (up to 1 KiB), the
-- staging buffer behind it (and the library's buffer), maxlength, the argument checks and error positions,
-- methods taken off a connection, the staging buffer's size limit, and
-- SIGPIPE on a one-way pipe whose reader is gone.
local H = require "harness"
local mpconn = require "mpconn"

local function bytes(n, salt)
  return string.rep(H.ALL256:sub(salt or 1) .. H.ALL256, n // 256 + 1):sub(1, n)
end

local function echo_pair() return H.echo_pair(mpconn) end

local function echo(c, s, what)
  H.eq(c:send_bytes(s), true, what .. ": send")
  local got, msg, code = c:recv_bytes()
  if got == nil then error(what .. ": recv failed: " .. tostring(msg) .. " " .. tostring(code)) end
  if got ~= s then H.eq(H.describe(got), H.describe(s), what) end
end

H.test("messages on both sides of the 1 KiB stack buffer arrive intact, in order", function()
  local a, b = mpconn.pipe()
  local sizes = { 0, 1, 40, 41, 1023, 1024, 1025, 4096, 65536, 100000, 3, 1025, 0 }
  for k, n in ipairs(sizes) do
    local s = bytes(n, k)
    H.eq(a:send_bytes(s), true, n .. " bytes: send")
    H.eq(b:recv_bytes(), s, n .. " bytes (message " .. k .. ")")
  end
  -- Several long messages queued at once come back one by one.
  H.eq(a:send_many({ bytes(5000, 1), "x", bytes(70000, 2), bytes(1025, 3) }), true, "batch")
  H.eq(b:recv_bytes(), bytes(5000, 1), "first")
  H.eq(b:recv_bytes(), "x", "second")
  H.eq(b:recv_bytes(), bytes(70000, 2), "third")
  H.eq(b:recv_bytes(), bytes(1025, 3), "fourth")
  a:close(); b:close()
end)

H.test("recv_bytes(maxlength) takes long messages up to maxlength and refuses longer ones", function()
  local a, b = mpconn.pipe()
  local s = bytes(5000)
  a:send_bytes(s)
  H.eq(b:recv_bytes(5000), s, "exactly maxlength, staged")
  a:send_bytes("short")
  H.eq(b:recv_bytes(1 << 40), "short", "a huge maxlength")
  a:send_bytes(s)
  H.fails("TOOLONG", "bad message length", b:recv_bytes(4999))
  H.eq(b:is_readable(), false, "not readable after TOOLONG (as CPython)")
  a:close(); b:close()
  -- Past the staging buffer's 4 MiB: refused on the header alone.
  local r, w = mpconn.pipe(false)
  local raw = assert(io.open("/proc/self/fd/" .. w:fileno(), "wb"))
  raw:setvbuf("no")
  raw:write(mpconn.frame_header(5 << 20))
  H.fails("TOOLONG", "bad message length", r:recv_bytes(1 << 20))
  raw:close(); w:close(); r:close()
end)

H.test("a long message over max_message_size is refused before it is read", function()
  local a, b = mpconn.pipe(true, { max_message_size = 2000 })
  a:send_bytes(bytes(2000))
  H.eq(b:recv_bytes(), bytes(2000), "at the limit")
  a:send_bytes(bytes(2001))
  H.fails("TOOLONG", nil, b:recv_bytes())
  a:close(); b:close()
end)

H.test("a long message whose payload is late times out and leaves the stream in step", function()
  local r, w = mpconn.pipe(false)
  r:set_timeout(0.05)
  -- The header of a 4000-byte message alone (written to the pipe through a
  -- second descriptor): recv_bytes times out without consuming a payload
  -- byte, so the message is still whole afterwards.
  local raw = assert(io.open("/proc/self/fd/" .. w:fileno(), "wb"))
  raw:setvbuf("no")
  raw:write(mpconn.frame_header(4000))
  H.fails("TIMEOUT", nil, r:recv_bytes())
  raw:write(bytes(4000))
  H.eq(r:recv_bytes(), bytes(4000), "the message after the timeout")
  raw:close()
  w:close(); r:close()
end)

H.test("megabyte messages echo through a second process, with and without maxlength", function()
  local c, finish = echo_pair()
  for k, n in ipairs({ 1 << 20, 1025, (1 << 20) + 7, 3 << 20, 16, 1 << 20 }) do
    echo(c, bytes(n, k), n .. " bytes")
  end
  local s = bytes(2 << 20)
  H.eq(c:send_bytes(s), true, "send for maxlength")
  H.eq(c:recv_bytes(2 << 20), s, "2 MiB with maxlength 2 MiB")
  local out, ok = finish()
  H.match(out, "ECHOED 7", "child output")
  H.ok(ok, "child exit status")
end)

H.test("long messages up to 4 MiB reuse one staging buffer and longer ones bypass it", function()
  local c, finish = echo_pair()
  echo(c, bytes(1 << 20), "1 MiB")
  local size = mpconn._recv_buffer_size()
  -- (An earlier test may have left a larger buffer: there is one per Lua state.)
  H.ok(size >= 1 << 20 and size <= (4 << 20) + 8192, "1 to 4 MiB staged, got " .. size)
  for k = 1, 20 do echo(c, bytes(k * 1000, k), "message " .. k) end
  H.eq(mpconn._recv_buffer_size(), size, "kept for shorter messages")
  echo(c, bytes(4 << 20), "4 MiB: the longest staged")
  local full = mpconn._recv_buffer_size()
  H.ok(full >= 4 << 20 and full <= (4 << 20) + 8192, "4 MiB staged, got " .. full)
  echo(c, bytes((4 << 20) + 1, 3), "4 MiB + 1: the library's buffer")
  echo(c, bytes(9 << 20, 5), "9 MiB")
  H.eq(mpconn._recv_buffer_size(), full, "longer messages leave the staging buffer as it was")
  local s = bytes(6 << 20, 7)
  H.eq(c:send_bytes(s), true, "send 6 MiB")
  H.eq(c:recv_bytes(6 << 20), s, "6 MiB with maxlength, through the library's buffer")
  local out, ok = finish()
  H.match(out, "ECHOED 25", "child output")
  H.ok(ok, "child exit status")
end)

H.test("the C methods work as plain functions, taken off a connection or the class", function()
  local a, b = mpconn.pipe()
  local send, recv = a.send_bytes, b.recv_bytes
  H.eq(send(a, "one"), true, "send taken off a")
  H.eq(recv(b), "one", "recv taken off b")
  H.eq(mpconn.Connection.send_many(a, { "two" }), true, "class send_many")
  H.eq(mpconn.Connection.recv_bytes(b, 10), "two", "class recv_bytes")
  -- Taken off before close, called after: raises, never touches the handle.
  a:close()
  H.raises("send_bytes: connection is closed", send, a, "x")
  H.raises("send_many: connection is closed", mpconn.Connection.send_many, a, { "x" })
  H.fails("EOF", "^closed$", recv(b))
  b:close()
  H.raises("recv_bytes: connection is closed", recv, b)
  H.raises("mpconn connection expected, got table", recv, {})
  H.raises("mpconn connection expected, got table", send, { 42 }, "x")
  H.raises("mpconn connection expected, got nil", recv, nil)
end)

H.test("argument errors point at the caller's line", function()
  local a, b = mpconn.pipe()
  local this = debug.getinfo(1, "S").short_src
  local function where(fn, ...)
    local ok, err = pcall(fn, ...)
    H.eq(ok, false, "raised")
    return err
  end
  local line = debug.getinfo(1, "l").currentline
  local e1 = where(function() local v = a:send_bytes(5) return v end)
  local e2 = where(function() local v = b:recv_bytes(-1) return v end)
  local e3 = where(function() local v = a:send_many("x") return v end)
  a:close()
  local e4 = where(function() local v = a:send_bytes("x") return v end)
  H.match(e1, "^" .. this:gsub("%p", "%%%0") .. ":" .. (line + 1) .. ": bad argument #1 to 'send_bytes'", "send_bytes")
  H.match(e2, ":" .. (line + 2) .. ": bad argument #1 to 'recv_bytes'", "recv_bytes")
  H.match(e3, ":" .. (line + 3) .. ": bad argument #1 to 'send_many'", "send_many")
  H.match(e4, ":" .. (line + 5) .. ": send_bytes: connection is closed", "closed")
  -- A non-string list entry: raised before anything is sent.
  local c, d = mpconn.pipe()
  H.raises("send_many: message 3 is a table, string expected", c.send_many, c, { "a", "b", {} })
  H.eq(d:poll(), false, "nothing sent")
  c:close(); d:close(); b:close()
end)

H.test("send_many takes lists longer than its stack array", function()
  local a, b = mpconn.pipe()
  local list = {}
  for k = 1, 700 do list[k] = tostring(k) end
  H.eq(a:send_many(list), true, "700 messages")
  for k = 1, 700 do
    local got = b:recv_bytes()
    if got ~= list[k] then H.eq(got, list[k], "message " .. k) end
  end
  H.eq(b:poll(), false, "nothing more")
  a:close(); b:close()
end)

-- SIGPIPE: run in a child, so a regression kills the child, not this suite.
local SIGPIPE_CHILD = [[
local mpconn = require "mpconn"
local function blocked_or_pending()
  local f = assert(io.open("/proc/self/status"))
  local t = f:read("a")
  f:close()
  local out = {}
  for _, k in ipairs({ "SigBlk", "SigPnd", "ShdPnd" }) do
    local m = tonumber(t:match(k .. ":%s*(%x+)"), 16)
    if m and m & 0x1000 ~= 0 then out[#out + 1] = k end -- SIGPIPE is 13
  end
  return table.concat(out, ",")
end
local r, w = assert(mpconn.pipe(false))
r:close()
local function show(what, ...) print(what, select("#", ...), ...) end
show("send_bytes", w:send_bytes("x"))
show("send_many", w:send_many({ "a", "b" }))
show("sub", w:send_bytes("abc", 2))
show("value", w:send({ 1, 2 }))
-- Through the class (issue 14, item 6): the method does not know w is a pipe.
local C = mpconn.Connection
show("class_send_bytes", C.send_bytes(w, "x"))
show("class_send_many", C.send_many(w, { "a" }))
show("class_send", C.send(w, "v"))
print("sigpipe", "[" .. blocked_or_pending() .. "]")
print("alive")
]]

H.test("writing to a one-way pipe whose reader is gone returns nil, message, OS and leaves no SIGPIPE behind", function()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(SIGPIPE_CHILD)
  f:close()
  local out, ok = H.finish(H.spawn(H.lua .. " " .. H.q(path)))
  os.remove(path)
  H.match(out, "alive", "the child survived (output: " .. out .. ")")
  H.ok(ok, "child exit status")
  for _, what in ipairs({ "send_bytes", "send_many", "sub", "value", "class_send_bytes", "class_send_many",
                          "class_send" }) do
    H.match(out, what .. "\t3\tnil\t[^\n]*\tOS\n", what .. " result")
  end
  H.match(out, "[Bb]roken pipe", "the message names EPIPE")
  H.match(out, "sigpipe\t%[%]", "SIGPIPE neither blocked nor pending afterwards")
end)

H.test("every end, and the class, share one set of C methods (no per-end SIGPIPE variants)", function()
  local r, w = mpconn.pipe(false)
  local C = mpconn.Connection
  for _, name in ipairs({ "send_bytes", "send_many", "recv_bytes", "send", "recv" }) do
    H.eq(rawget(w, name), C[name], "the writer's " .. name)
    H.eq(rawget(r, name), C[name], "the reader's " .. name)
  end
  local a, b = mpconn.pipe()
  H.eq(rawget(a, "send_many"), C.send_many, "a duplex end's send_many")
  a:close(); b:close()
  H.eq(w:send_bytes("through the pipe"), true, "send")
  H.eq(r:recv_bytes(), "through the pipe", "recv")
  r:close(); w:close()
end)

H.test("handles are userdata of the module's own, not SWIG pointers", function()
  local a, b = mpconn.pipe()
  local h = rawget(a, 1)
  H.eq(type(h), "userdata", "a userdata")
  H.eq(getmetatable(h), "mpconn.conn", "its metatable's name (the table itself is hidden)")
  local l = assert(mpconn.listen(H.address("unix")))
  H.eq(getmetatable(rawget(l, "_listener")), "mpconn.listener", "a listener's handle")
  l:close()
  -- A handle of the wrong kind, or any other value, is refused by name.
  local core = mpconn.core
  H.raises("connection handle expected", core.mpc_conn_fileno, {})
  H.raises("connection handle expected", core.mpc_conn_fileno, io.stdout)
  H.raises("listener handle expected", core.mpc_listener_fileno, h)
  H.raises("connection handle expected", core.conn_close, mpconn.null)
  -- The fast paths never take a foreign userdata in [1] for a handle.
  a[1] = io.stdout
  H.raises("without a handle", a.send_bytes, a, "x")
  H.raises("without a handle", a.recv_bytes, a)
  H.raises("without a handle", a.send, a, 1)
  a[1] = h
  -- nil and closed handles raise "closed" in the raw core.
  H.raises("connection is closed", core.mpc_conn_fileno, nil)
  a:close()
  H.raises("connection is closed", core.mpc_conn_fileno, h)
  H.raises("connection is closed", core.mpc_send_bytes, h, "x")
  b:close()
end)

H.test("a raw handle that is dropped without close is closed by its own __gc", function()
  local core = mpconn.core
  local st, ra, wb = core.mpc_pipe(0, nil)
  H.eq(st, 0, "raw pipe")
  local fd = core.mpc_conn_fileno(wb)
  H.eq(core.mpc_send_bytes(wb, "one"), 0, "raw send")
  local _, msg = core.mpc_recv_bytes(ra, -1)
  H.eq(msg, "one", "raw recv")
  ra, wb = nil, nil
  local function nfds()
    local p = io.popen("ls /proc/" .. H.pid .. "/fd | wc -l")
    local n = tonumber(p:read("a")); p:close(); return n
  end
  collectgarbage(); collectgarbage()
  local before = nfds()
  for _ = 1, 50 do core.mpc_pipe(1, nil) end
  collectgarbage(); collectgarbage()
  H.ok(nfds() <= before + 2, "50 dropped raw pipes left no descriptors open")
  H.ok(fd >= 0, "the raw writer had a descriptor")
end)

H.done()
