-- Listeners and connections over TCP, IPv6, Unix paths and abstract names:
-- addresses, accept/connect failures, and round trips up to 16 MiB with a
-- second Lua process (with and without an authkey, and a wrong key).
local H = require "harness"
local mpconn = require "mpconn"

local KINDS = { "tcp", "tcp6", "unix", "abstract" }

local function listen_or_skip(kind, opts, name)
  local l, msg, code = mpconn.listen(H.address(kind), opts)
  if not l and kind == "tcp6" then
    H.skip(name, "IPv6 loopback unavailable: " .. tostring(msg))
    return nil
  end
  return assert(l, tostring(msg) .. " " .. tostring(code))
end

for _, kind in ipairs(KINDS) do
  local name = "a listener on a " .. kind .. " address accepts an unauthenticated client"
  local l = listen_or_skip(kind, nil, name)
  if l then
    H.test(name, function()
      if kind == "tcp" then H.match(l.address, "^127%.0%.0%.1:[1-9]%d*$", "address") end
      if kind == "tcp6" then H.match(l.address, "^%[::1%]:[1-9]%d*$", "address") end
      if kind == "unix" then H.ok(H.file_exists(l.address), "socket file exists") end
      if kind == "abstract" then H.match(l.address, "^@mpconn%-lua", "address") end
      local c = assert(mpconn.connect(l.address, { timeout = 5 }))
      local s = assert(l:accept(5))
      H.eq(s:send_bytes(H.ALL256), true, "server send")
      H.eq(c:recv_bytes(), H.ALL256, "client got all bytes")
      H.eq(c:send_bytes("\0reply\0"), true, "client send")
      H.eq(s:recv_bytes(), "\0reply\0", "server got reply")
      if kind == "tcp" then H.match(s:peer(), "^127%.0%.0%.1:%d+$", "peer") end
      c:close()
      H.fails("EOF", "^closed$", s:recv_bytes())
      s:close()
      local addr = l.address
      l:close()
      if kind == "unix" then H.eq(H.file_exists(addr), false, "socket file removed on close") end
    end)
  end
end

H.test("accept with a timeout and no client returns nil, message, TIMEOUT", function()
  local l = assert(mpconn.listen(H.address("tcp")))
  H.fails("TIMEOUT", nil, l:accept(0.05))
  l:close()
end)

H.test("connecting to a closed port returns nil, a refused message, OS", function()
  local l = assert(mpconn.listen(H.address("tcp")))
  local addr = l.address
  l:close()
  H.fails("OS", "refused", mpconn.connect(addr, { timeout = 5 }))
  H.fails("OS", nil, mpconn.connect("/nonexistent-dir/mpconn.sock"))
end)

H.test("listening twice on one Unix path returns nil, message, OS", function()
  local l = assert(mpconn.listen(H.address("unix")))
  H.fails("OS", "in use", mpconn.listen(l.address))
  l:close()
end)

-- ---- with a second process -------------------------------------------------

local function child(address, keyhex, dialect)
  return H.spawn(string.format("%s %s/echo_peer.lua %s %s %s", H.lua, H.dir, H.q(address),
    keyhex or "-", dialect or "-"))
end

local SIZES = { 0, 1, 16384, 16385, 1 << 20, 16 << 20 }

for _, kind in ipairs({ "tcp", "unix", "abstract" }) do
  local name = "messages of 0 B to 16 MiB echo through a second Lua process over " .. kind .. " with an authkey"
  H.test(name, function()
    local key = "s\0cret"
    local l = assert(mpconn.listen(H.address(kind), { authkey = key, timeout = 20 }))
    local p = child(l.address, H.hex(key))
    local c, msg, code = l:accept(20)
    if not c then
      error("accept: " .. tostring(msg) .. " " .. tostring(code) .. "; child said: " .. H.finish(p))
    end
    c:set_timeout(60)
    for _, n in ipairs(SIZES) do
      local s = string.rep(H.ALL256, n // 256 + 1):sub(2, n + 1)
      H.eq(c:send_bytes(s), true, n .. " bytes sent")
      local got, m2, c2 = c:recv_bytes()
      if got == nil then error(n .. " bytes: " .. tostring(m2) .. " " .. tostring(c2)) end
      if got ~= s then H.eq(H.repr(got), H.repr(s), n .. " bytes echoed") end
    end
    H.eq(c:send_many({ "a", "b", "" }), true, "batch")
    for _, s in ipairs({ "a", "b", "" }) do H.eq(c:recv_bytes(), s, "batch echo") end
    c:close()
    local out, ok = H.finish(p)
    H.match(out, "ECHOED " .. (#SIZES + 3), "child output")
    H.ok(ok, "child exit status")
    l:close()
  end)
end

H.test("a wrong key gives nil, message, AUTH on both sides and the listener stays usable", function()
  local l = assert(mpconn.listen(H.address("tcp"), { authkey = "right", timeout = 20 }))
  local p = child(l.address, H.hex("wrong"))
  H.fails("AUTH", "digest received was wrong", l:accept(20))
  local out, ok = H.finish(p)
  H.match(out, "^CONNECT%-FAILED AUTH ", "child output")
  H.eq(ok, false, "child exit status is non-zero")
  -- The listener still works for the right key.
  p = child(l.address, H.hex("right"))
  local c = assert(l:accept(20))
  H.eq(c:send_bytes("after"), true, "send")
  H.eq(c:recv_bytes(), "after", "echo")
  c:close()
  out = H.finish(p)
  H.match(out, "ECHOED 1", "child output")
  l:close()
end)

H.test("a client without the key a listener expects fails the handshake", function()
  local l = assert(mpconn.listen(H.address("unix"), { authkey = "k", timeout = 5 }))
  local p = child(l.address, nil)
  local c, msg, code = l:accept(20)
  H.eq(c, nil, "no connection")
  H.ok(code == "PROTO" or code == "AUTH" or code == "TIMEOUT" or code == "EOF",
    "code " .. tostring(code) .. " " .. tostring(msg))
  H.finish(p)
  l:close()
end)

for _, d in ipairs({ { "legacy", "modern" }, { "modern", "legacy" }, { "strict", "strict" } }) do
  H.test("a " .. d[1] .. " listener and a " .. d[2] .. " client agree", function()
    local l = assert(mpconn.listen(H.address("tcp"), { authkey = "k", dialect = d[1], timeout = 20 }))
    local p = child(l.address, H.hex("k"), d[2])
    local c = assert(l:accept(20))
    H.eq(c:send_bytes("x"), true, "send")
    H.eq(c:recv_bytes(), "x", "echo")
    c:close()
    H.match(H.finish(p), "ECHOED 1", "child")
    l:close()
  end)
end

H.test("a strict client refuses a legacy listener's challenge", function()
  local l = assert(mpconn.listen(H.address("tcp"), { authkey = "k", dialect = "legacy", timeout = 20 }))
  local p = child(l.address, H.hex("k"), "strict")
  local c, msg = l:accept(20)
  H.eq(c, nil, "no connection (" .. tostring(msg) .. ")")
  H.match(H.finish(p), "CONNECT%-FAILED AUTH", "the strict client's verdict")
  l:close()
end)

H.done()
