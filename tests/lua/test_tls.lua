-- TLS in the Lua binding (SPEC 9, issue 18): the tls option table of
-- mpconn.connect / mpconn.listen (LuaSec's names: certificate, key, cafile,
-- capath, verify, server_name).  Certificates are made at run time by
-- tests/tls/make_certs.sh (the openssl command) in a temporary directory.
-- Checked: the option table (unknown keys and wrong types raise); Lua
-- client <-> Lua listener (the other end a child process, tls_peer.lua) with
-- messages of 0 B .. 4 MiB and values both ways; the server verified by
-- default (wrong CA, wrong name, no CA each nil, message, "TLS", quickly)
-- and verify = false explicit; mutual TLS; a TLS client at a plaintext
-- listener and a plaintext client at a TLS listener; the listener serving
-- the next client after each failure; the mpconn Python package
-- (MPCONN_PYTHON) and the CLI (MPCONN_CLI) as TLS peers both ways; the
-- non-blocking mode (one process, both ends driven by hand) and
-- mpconn.cqueues coroutines over TLS.
local H = require "harness"
local mpconn = require "mpconn"

local KEY = "tls\0key"
local KEYHEX = H.hex(KEY)
-- Seconds a TLS failure may take (the deadlines are 10 s and more; more
-- time under valgrind: MPCONN_TLS_QUICK).
local QUICK = tonumber(os.getenv("MPCONN_TLS_QUICK") or "") or 3.0

---------------------------------------------------------------------------
-- Certificates
---------------------------------------------------------------------------
local CERTS = string.format("%s/mpconn-lua-tls-%s", os.getenv("TMPDIR") or "/tmp", H.pid)
local function cert(name) return CERTS .. "/" .. name end

local made = os.execute(string.format("bash %s >/dev/null 2>&1",
  H.q(H.dir .. "/../tls/make_certs.sh") .. " " .. H.q(CERTS)))
if not made or not H.file_exists(cert("server.pem")) then
  H.skip("TLS", "tests/tls/make_certs.sh could not make certificates (is the openssl command installed?)")
  H.done()
end

local function server_tls(extra)
  local t = { certificate = cert("server.pem"), key = cert("server.key") }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function client_tls(extra)
  local t = { cafile = cert("ca.pem") }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- Lua source of a table (strings, booleans, numbers, nested tables) for
-- tls_peer.lua's OPTS argument.
local function lua_src(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  for k, x in pairs(v) do parts[#parts + 1] = "[" .. lua_src(k) .. "] = " .. lua_src(x) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function peer(mode, address, opts, count)
  return H.spawn(string.format("%s %s %s %s %s %d", H.q(H.lua), H.q(H.dir .. "/tls_peer.lua"), mode,
    H.q(address), H.q("return " .. lua_src(opts)), count or 1))
end

-- A child Lua listener serving count clients: its address and process.
local function child_listener(kind, opts, count)
  local p = peer("listen", H.address(kind), opts, count)
  local line = p:read("l") or ""
  local addr = line:match("^ADDRESS (.*)$")
  if not addr then error("the child listener did not start: " .. line .. (p:read("a") or "")) end
  return addr, p
end

local function count_of(out, pattern)
  local n = 0
  for _ in out:gmatch(pattern) do n = n + 1 end
  return n
end

-- Messages of every size: the interop set (0 B .. 1 MiB) and 4 MiB.
local BIG = string.rep(string.char(1, 2, 3, 0, 255, 128, 7), (4 * 1024 * 1024) // 7 + 1):sub(1, 4 * 1024 * 1024)
local SIZES = {}
for i, s in ipairs(H.MESSAGES) do SIZES[i] = s end
SIZES[#SIZES + 1] = BIG

-- Must equal VALUES in py_tls_peer.py.
local VALUES = {
  mpconn.null, true, 42, -7, 2.5, "text", mpconn.bytes("by\0tes"),
  mpconn.list { 1, "two", mpconn.list { 3.0 } },
  mpconn.dict({ a = 1, b = mpconn.list { mpconn.null } }, { "a", "b" }),
}

-- Sends every message and value over c and checks the echoes (the other
-- end echoes bytes, so values come back as the pickles we sent).
local function exchange(c, what)
  for i, s in ipairs(SIZES) do
    H.eq(c:send_bytes(s), true, what .. ": send " .. i)
    local got, m, code = c:recv_bytes()
    if got == nil then error(what .. ": echo " .. i .. ": " .. tostring(m) .. " " .. tostring(code)) end
    H.ok(got == s, what .. ": echo " .. i .. " byte-exact (" .. #s .. " bytes, got " .. #got .. ")")
  end
  for i, v in ipairs(VALUES) do
    H.eq(c:send(v), true, what .. ": send value " .. i)
    H.eq(mpconn.repr(c:recv({ bytes = "marked" })), mpconn.repr(v), what .. ": value " .. i)
  end
end

-- The count of messages and values exchange() sends.
local EXCHANGED = #SIZES + #VALUES

---------------------------------------------------------------------------
-- The option table
---------------------------------------------------------------------------
H.test("the tls table: unknown keys, wrong types and TLS where it has no meaning raise", function()
  H.raises("unknown option tls.cert to 'connect'", mpconn.connect, "127.0.0.1:1", { tls = { cert = "x" } })
  H.raises("unknown option tls.cafile_ to 'listen'", mpconn.listen, "127.0.0.1:0", { tls = { cafile_ = "x" } })
  H.raises("option tls to 'connect': table expected, got boolean", mpconn.connect, "127.0.0.1:1", { tls = true })
  H.raises("option tls.verify to 'connect': boolean expected, got string", mpconn.connect, "127.0.0.1:1",
    { tls = { verify = "none" } })
  H.raises("option tls.cafile to 'connect': string expected, got number", mpconn.connect, "127.0.0.1:1",
    { tls = { cafile = 1 } })
  H.raises("zero byte", mpconn.connect, "127.0.0.1:1", { tls = { server_name = "a\0b" } })
  H.raises("TLS is for connect and listen only", mpconn.pipe, true, { tls = {} })
  -- The error points at the caller.
  local err = H.raises("unknown option", mpconn.connect, "127.0.0.1:1", { tls = { x = 1 } })
  H.eq(type(err), "string", "message")
  local ok, e = pcall(function()
    local c = mpconn.connect("127.0.0.1:1", { tls = { x = 1 } })
    return c
  end)
  H.eq(ok, false, "raised")
  H.match(e, "test_tls%.lua", "reported at the caller's line")
end)

H.test("a TLS listener without a certificate, or with a missing file: nil, message, 'TLS'", function()
  H.fails("TLS", "certificate", mpconn.listen("127.0.0.1:0", { tls = {} }))
  H.fails("TLS", "/nonexistent%-mpconn%.pem", mpconn.listen("127.0.0.1:0",
    { tls = { certificate = "/nonexistent-mpconn.pem" } }))
  -- (A client makes its TLS context once connected: a plaintext listener
  -- that never accepts is enough.)
  local plain = assert(mpconn.listen("127.0.0.1:0", { backlog = 4 }))
  H.fails("TLS", "/nonexistent%-ca%.pem", mpconn.connect(plain.address,
    { tls = { cafile = "/nonexistent-ca.pem" }, timeout = 5 }))
  H.fails("TLS", "/nonexistent%-client%.pem", mpconn.connect(plain.address,
    { tls = { verify = false, certificate = "/nonexistent-client.pem" }, timeout = 5 }))
  plain:close()
  -- verify = true is the default spelled out; the server's key may be in the
  -- certificate file (here: not, so the listener fails to load).
  H.fails("TLS", nil, mpconn.listen("127.0.0.1:0", { tls = { certificate = cert("server.pem") } }))
  local l = assert(mpconn.listen("127.0.0.1:0", { tls = server_tls() }))
  l:close()
end)

---------------------------------------------------------------------------
-- Lua <-> Lua
---------------------------------------------------------------------------
for _, kind in ipairs({ "tcp", "unix" }) do
  H.test("a Lua client and a Lua TLS listener (a child) exchange 0 B .. 4 MiB and values over " .. kind, function()
    local addr, p = child_listener(kind, { authkey = KEY, timeout = 20, tls = server_tls() }, 1)
    -- Over a Unix socket there is no host in the address: the name is given.
    local tls = client_tls(kind == "unix" and { server_name = "localhost" } or nil)
    local c, m, code = mpconn.connect(addr, { authkey = KEY, timeout = 20, io_timeout = 60, tls = tls })
    if not c then error("connect: " .. tostring(m) .. " " .. tostring(code) .. "; child: " .. H.finish(p)) end
    exchange(c, "lua client")
    c:close()
    local out, ok = H.finish(p)
    H.ok(ok, "child exit status; output: " .. out)
    H.match(out, "ECHOED " .. EXCHANGED, "the child echoed everything")
  end)
end

H.test("a Lua TLS listener and a Lua client (a child), read-ahead on the listener's side", function()
  local l = assert(mpconn.listen(H.address("tcp"), { authkey = KEY, timeout = 20, read_ahead = true,
    tls = server_tls() }))
  -- "localhost:port": the name checked is the host, a DNS name of the certificate.
  local port = l.address:match(":(%d+)$")
  local p = peer("client", "localhost:" .. port, { authkey = KEY, timeout = 20, tls = client_tls() })
  local c, m, code = l:accept(20)
  if not c then error("accept: " .. tostring(m) .. " " .. tostring(code) .. "; child: " .. H.finish(p)) end
  c:set_timeout(60)
  exchange(c, "lua listener")
  c:close()
  local out, ok = H.finish(p)
  H.ok(ok, "child exit status; output: " .. out)
  H.match(out, "ECHOED " .. EXCHANGED, "the child echoed everything")
  l:close()
end)

H.test("the server is verified by default: wrong CA, wrong name, no CA fail quickly with 'TLS'; verify = false is explicit; the listener goes on", function()
  local addr, p = child_listener("tcp", { authkey = KEY, timeout = 20, tls = server_tls() }, 5)
  local function try(tls, what)
    local t0 = mpconn.monotonic()
    local c, m, code = mpconn.connect(addr, { authkey = KEY, timeout = 20, tls = tls })
    local dt = mpconn.monotonic() - t0
    H.fails("TLS", nil, c, m, code, what)
    H.ok(dt < QUICK, what .. ": failed within " .. QUICK .. " s (took " .. dt .. ")")
    print("       " .. what .. ": " .. m)
    return m
  end
  H.match(try({ cafile = cert("other-ca.pem") }, "wrong CA"), "certificate verify failed", "wrong CA message")
  H.match(try(client_tls({ server_name = "wrong.example" }), "wrong name"), "verify", "wrong name message")
  -- No CA: the system's store, which does not know the test CA.
  try({}, "no CA")
  -- verify = false: no check at all (the test CA is not given).
  local c = assert(mpconn.connect(addr, { authkey = KEY, timeout = 20, io_timeout = 20,
    tls = { verify = false, server_name = "wrong.example" } }))
  H.eq(c:send_bytes("unverified"), true, "send")
  H.eq(c:recv_bytes(), "unverified", "echo")
  c:close()
  -- And a verified client after all that.
  c = assert(mpconn.connect(addr, { authkey = KEY, timeout = 20, io_timeout = 20, tls = client_tls() }))
  H.eq(c:send_bytes("verified"), true, "send")
  H.eq(c:recv_bytes(), "verified", "echo")
  c:close()
  local out, ok = H.finish(p)
  H.ok(ok, "child exit status; output: " .. out)
  H.eq(count_of(out, "ACCEPT%-FAILED TLS"), 3, "the listener's three TLS failures; output: " .. out)
  H.eq(count_of(out, "ECHOED 1"), 2, "then two clients served; output: " .. out)
end)

H.test("mutual TLS: a listener with a cafile refuses a client without a certificate ('TLS' both sides), then serves one with it", function()
  local l = assert(mpconn.listen(H.address("tcp"), { authkey = KEY, timeout = 20,
    tls = server_tls({ cafile = cert("ca.pem") }) }))
  local p = peer("client", l.address, { authkey = KEY, timeout = 20, tls = client_tls() })
  local t0 = mpconn.monotonic()
  H.fails("TLS", nil, l:accept(20))
  H.ok(mpconn.monotonic() - t0 < QUICK, "quickly")
  local out = H.finish(p)
  H.match(out, "CONNECT%-FAILED TLS", "the client's side")
  -- A client certificate from another CA: refused too.
  p = peer("client", l.address, { authkey = KEY, timeout = 20,
    tls = client_tls({ certificate = cert("other.pem"), key = cert("other.key") }) })
  H.fails("TLS", nil, l:accept(20))
  H.match(H.finish(p), "CONNECT%-FAILED TLS", "the client's side (other CA)")
  p = peer("client", l.address, { authkey = KEY, timeout = 20,
    tls = client_tls({ certificate = cert("client.pem"), key = cert("client.key") }) })
  local c, m, code = l:accept(20)
  if not c then error("accept: " .. tostring(m) .. " " .. tostring(code) .. "; child: " .. H.finish(p)) end
  c:set_timeout(20)
  H.eq(c:send_bytes("mutual"), true, "send")
  H.eq(c:recv_bytes(), "mutual", "echo")
  c:close()
  local ok
  out, ok = H.finish(p)
  H.ok(ok, "child exit status; output: " .. out)
  l:close()
end)

H.test("a TLS client at a plaintext Lua listener: nil, message, 'TLS' at once; the listener goes on", function()
  local addr, p = child_listener("tcp", { authkey = KEY, timeout = 20 }, 2)
  local t0 = mpconn.monotonic()
  local c, m, code = mpconn.connect(addr, { authkey = KEY, timeout = 20, tls = client_tls() })
  H.fails("TLS", nil, c, m, code)
  H.ok(mpconn.monotonic() - t0 < QUICK, "quickly")
  print("       " .. m)
  c = assert(mpconn.connect(addr, { authkey = KEY, timeout = 20, io_timeout = 20 }))
  H.eq(c:send_bytes("plain"), true, "send")
  H.eq(c:recv_bytes(), "plain", "echo")
  c:close()
  local out, ok = H.finish(p)
  H.ok(ok, "child exit status; output: " .. out)
  H.match(out, "ACCEPT%-FAILED", "the plaintext listener refused the TLS client")
  H.match(out, "ECHOED 1", "then served the plaintext one")
end)

H.test("a plaintext client at a Lua TLS listener fails within the handshake deadline; the listener goes on", function()
  local l = assert(mpconn.listen(H.address("tcp"), { authkey = KEY, timeout = 20, handshake_timeout = 0.5,
    tls = server_tls() }))
  local p = peer("client", l.address, { authkey = KEY, timeout = 3 })
  local t0 = mpconn.monotonic()
  local c, m, code = l:accept(20)
  H.eq(c, nil, "refused")
  H.ok(code == "TLS" or code == "TIMEOUT", "TLS or TIMEOUT, got " .. tostring(code) .. " " .. tostring(m))
  H.ok(mpconn.monotonic() - t0 < QUICK, "within the handshake deadline")
  H.match(H.finish(p), "CONNECT%-FAILED", "the plaintext client failed too")
  p = peer("client", l.address, { authkey = KEY, timeout = 20, tls = client_tls() })
  c, m, code = l:accept(20)
  if not c then error("accept: " .. tostring(m) .. " " .. tostring(code) .. "; child: " .. H.finish(p)) end
  c:set_timeout(20)
  H.eq(c:send_bytes("after"), true, "send")
  H.eq(c:recv_bytes(), "after", "echo")
  c:close()
  local out, ok = H.finish(p)
  H.ok(ok, "child exit status; output: " .. out)
  l:close()
end)

---------------------------------------------------------------------------
-- The mpconn Python package
---------------------------------------------------------------------------
local PY = os.getenv("MPCONN_PYTHON") or ""
local function python_usable()
  if PY == "" then return nil, "MPCONN_PYTHON is not set" end
  local pp = io.popen(H.q(PY) .. ' -c "from mpconn import TLS; print(\'yes\')" 2>&1')
  local out = pp:read("a")
  pp:close()
  if not out:find("^yes") then return nil, PY .. " cannot import mpconn.TLS: " .. out:sub(1, 200) end
  return true
end

local function py(args)
  return H.spawn(string.format("%s %s %s", H.q(PY), H.q(H.dir .. "/py_tls_peer.py"), args))
end

-- The Python side of exchange(): H.MESSAGES from the client, echoed, then
-- VALUES with send()/recv() both ways.
local function py_exchange_as_client(c)
  for i, s in ipairs(H.MESSAGES) do H.eq(c:send_bytes(s), true, "send " .. i) end
  for i, s in ipairs(H.MESSAGES) do H.ok(c:recv_bytes() == s, "echo " .. i .. " byte-exact") end
  for i, v in ipairs(VALUES) do H.eq(c:send(v), true, "send value " .. i) end
  for i, v in ipairs(VALUES) do
    H.eq(mpconn.repr(c:recv({ bytes = "marked" })), mpconn.repr(v), "value " .. i .. " from Python")
  end
end

local function py_exchange_as_server(c)
  local got = {}
  for i, s in ipairs(H.MESSAGES) do
    got[i] = c:recv_bytes()
    H.ok(got[i] == s, "message " .. i .. " byte-exact")
  end
  H.eq(c:send_many(got), true, "echo")
  local vals = {}
  for i, v in ipairs(VALUES) do
    vals[i] = c:recv({ bytes = "marked" })
    H.eq(mpconn.repr(vals[i]), mpconn.repr(v), "value " .. i .. " from Python")
  end
  for i = 1, #VALUES do H.eq(c:send(vals[i]), true, "value " .. i .. " back") end
  H.fails("EOF", nil, c:recv_bytes())
end

local usable, why = python_usable()
if not usable then
  H.skip("Lua with the mpconn Python package over TLS", why)
else
  H.test("a Lua client and an mpconn Python TLS listener; a wrong CA first (TLS), the listener goes on", function()
    local p = py(string.format("listen 127.0.0.1:0 %s %s 2", H.q(CERTS), KEYHEX))
    local addr = (p:read("l") or ""):match("^ADDRESS (.*)$")
    if not addr then error("python listener did not start: " .. H.finish(p)) end
    local t0 = mpconn.monotonic()
    H.fails("TLS", "certificate verify failed", mpconn.connect(addr, { authkey = KEY, timeout = 20,
      tls = { cafile = cert("other-ca.pem") } }))
    H.ok(mpconn.monotonic() - t0 < QUICK, "quickly")
    local c, m, code = mpconn.connect(addr, { authkey = KEY, timeout = 20, io_timeout = 30, tls = client_tls() })
    if not c then error("connect: " .. tostring(m) .. " " .. tostring(code) .. "; python: " .. H.finish(p)) end
    py_exchange_as_client(c)
    c:close()
    local out, ok = H.finish(p)
    H.ok(ok, "python exit status; output: " .. out)
    H.match(out, "PY%-ACCEPT%-FAILED SSL", "python saw an ssl error for the wrong-CA client")
    H.match(out, "PY%-SERVED", "then served the Lua client")
    H.match(out, "PY%-OK", "python output")
  end)

  H.test("an mpconn Python TLS client and a Lua TLS listener", function()
    local l = assert(mpconn.listen(H.address("tcp"), { authkey = KEY, timeout = 20, tls = server_tls() }))
    local p = py(string.format("client %s %s %s", H.q(l.address), H.q(CERTS), KEYHEX))
    local c, m, code = l:accept(30)
    if not c then error("accept: " .. tostring(m) .. " " .. tostring(code) .. "; python: " .. H.finish(p)) end
    c:set_timeout(30)
    py_exchange_as_server(c)
    c:close()
    local out, ok = H.finish(p)
    H.ok(ok, "python exit status; output: " .. out)
    H.match(out, "PY%-OK", "python output")
    l:close()
  end)

  H.test("mutual TLS with Python: a Lua client with its certificate at a Python listener requiring one", function()
    local p = py(string.format("listen 127.0.0.1:0 %s %s 2 mtls", H.q(CERTS), KEYHEX))
    local addr = (p:read("l") or ""):match("^ADDRESS (.*)$")
    if not addr then error("python listener did not start: " .. H.finish(p)) end
    H.fails("TLS", nil, mpconn.connect(addr, { authkey = KEY, timeout = 20, io_timeout = 20, tls = client_tls() }))
    local c, m, code = mpconn.connect(addr, { authkey = KEY, timeout = 20, io_timeout = 30,
      tls = client_tls({ certificate = cert("client.pem"), key = cert("client.key") }) })
    if not c then error("connect: " .. tostring(m) .. " " .. tostring(code) .. "; python: " .. H.finish(p)) end
    py_exchange_as_client(c)
    c:close()
    local out, ok = H.finish(p)
    H.ok(ok, "python exit status; output: " .. out)
    H.match(out, "PY%-ACCEPT%-FAILED", "python refused the client without a certificate")
    H.match(out, "PY%-OK", "python output")
  end)
end

---------------------------------------------------------------------------
-- The CLI
---------------------------------------------------------------------------
local CLI = os.getenv("MPCONN_CLI") or ""
local function cli_tls()
  if CLI == "" or not H.file_exists(CLI) then return false end
  local pp = io.popen(H.q(CLI) .. " --help 2>&1")
  local help = pp:read("a")
  pp:close()
  return help:find("--tls-cert", 1, true) ~= nil
end

if not cli_tls() then
  H.skip("Lua with the mpconn CLI over TLS", "MPCONN_CLI (" .. CLI .. ") is not built or has no --tls-cert")
else
  local CLI_MSGS = { "", "\0", H.ALL256, "hello\0world\255" }
  local function hexargs(list)
    local t = {}
    for i, s in ipairs(list) do t[i] = H.q(H.hex(s)) end
    return table.concat(t, " ")
  end

  H.test("a Lua TLS listener and `mpconn send --tls-ca`; a wrong CA first (exit 9, 'TLS' here)", function()
    local l = assert(mpconn.listen(H.address("tcp"), { authkey = KEY, timeout = 20, tls = server_tls() }))
    local keyfile = os.tmpname()
    local f = assert(io.open(keyfile, "wb"))
    f:write(KEY)
    f:close()
    local p = H.spawn(string.format("%s send %s --authkey-file %s --tls-ca %s --timeout 20 x",
      H.q(CLI), H.q(l.address), H.q(keyfile), H.q(cert("other-ca.pem"))))
    H.fails("TLS", nil, l:accept(20))
    local out, ok, code = H.finish(p)
    H.eq(ok, false, "the tool failed")
    H.eq(code, 9, "the tool's TLS exit status; output: " .. out)
    p = H.spawn(string.format("%s send %s --authkey-file %s --tls-ca %s --hex --timeout 20 --recv %d %s",
      H.q(CLI), H.q(l.address), H.q(keyfile), H.q(cert("ca.pem")), #CLI_MSGS, hexargs(CLI_MSGS)))
    local c, m, cd = l:accept(20)
    if not c then error("accept: " .. tostring(m) .. " " .. tostring(cd) .. "; tool: " .. H.finish(p)) end
    c:set_timeout(20)
    for i, want in ipairs(CLI_MSGS) do
      local s = c:recv_bytes()
      H.ok(s == want, "message " .. i .. " byte-exact")
      assert(c:send_bytes(s))
    end
    out, ok = H.finish(p)
    os.remove(keyfile)
    H.ok(ok, "tool exit status; output: " .. out:sub(1, 300))
    for _, s in ipairs(CLI_MSGS) do
      if s ~= "" then H.ok(out:find(H.hex(s), 1, true), "the tool printed the echo of " .. H.describe(s)) end
    end
    c:close()
    l:close()
  end)

  H.test("a Lua TLS client and `mpconn listen --tls-cert --tls-key --echo`", function()
    -- The tool prints every message (10 MiB of hex here) before echoing it:
    -- its stdout goes to a file, its stderr ("listening on") to us.
    local printed = os.tmpname()
    local p = H.spawn(string.format("{ %s listen %s --authkey %s --tls-cert %s --tls-key %s --hex --echo --count %d --timeout 20 2>&1 >%s; }",
      H.q(CLI), H.q(H.address("tcp")), H.q("cli key"), H.q(cert("server.pem")), H.q(cert("server.key")), #SIZES,
      H.q(printed)))
    local addr = (p:read("l") or ""):match("^listening on (.*)$")
    if not addr then error("the tool did not start: " .. H.finish(p)) end
    -- A plaintext client first would need the tool's handshake deadline; a
    -- wrong name is refused by us, and the tool goes on.
    H.fails("TLS", nil, mpconn.connect(addr, { authkey = "cli key", timeout = 20,
      tls = client_tls({ server_name = "wrong.example" }) }))
    local c = assert(mpconn.connect(addr, { authkey = "cli key", timeout = 20, io_timeout = 60, tls = client_tls() }))
    for i, s in ipairs(SIZES) do
      H.eq(c:send_bytes(s), true, "send " .. i)
      H.ok(c:recv_bytes() == s, "echo " .. i .. " byte-exact (" .. #s .. " bytes)")
    end
    c:close()
    local out, ok = H.finish(p)
    H.ok(ok, "tool exit status; output: " .. out:sub(1, 300))
    local f = assert(io.open(printed, "rb"))
    local lines = {}
    for line in f:lines() do lines[#lines + 1] = line end
    f:close()
    os.remove(printed)
    H.eq(#lines, #SIZES, "the tool printed every message")
    for i = 1, 5 do H.eq(lines[i], H.hex(SIZES[i]), "the tool printed message " .. i) end
  end)
end

---------------------------------------------------------------------------
-- The non-blocking mode
---------------------------------------------------------------------------
-- Calls fn() until it returns something other than a want, flushing the
-- others meanwhile; every want string and events() value is checked.
-- Bounded (and each try sleeps nothing: both ends are in this process).
local function drive(what, fn, ...)
  local others = { ... }
  for _ = 1, 2000000 do
    local r, e, code = fn()
    if not (r == nil and code == "AGAIN") then return r, e, code end
    H.ok(e == "wantread" or e == "wantwrite", what .. ": want string " .. tostring(e))
    for _, o in ipairs(others) do
      local ev = o:events()
      H.ok(ev == "r" or ev == "w" or ev == "rw", what .. ": events " .. tostring(ev))
      o:flush()
    end
  end
  error(what .. ": no progress")
end

H.test("non-blocking: a TLS connect, accept, both handshakes and 0 B .. 4 MiB each way, one process", function()
  local l = assert(mpconn.listen(H.address("tcp"), { authkey = KEY, nonblocking = true, tls = server_tls() }))
  local c = assert(mpconn.connect(l.address, { authkey = KEY, nonblocking = true, tls = client_tls() }))
  H.eq(c:is_blocking(), false, "non-blocking")
  local s = drive("accept", function() c:flush(); return l:accept() end)
  H.ok(s, "accepted")
  local seen = {}
  for _ = 1, 100000 do
    local a, ea = c:flush()
    local b, eb = s:flush()
    if ea then seen[ea] = true end
    if eb then seen[eb] = true end
    if a and b then break end
  end
  H.eq(c:flush(), true, "client handshake done")
  H.eq(s:flush(), true, "server handshake done")
  print("       wants seen during the handshakes: " .. table.concat((function()
    local t = {}
    for k in pairs(seen) do t[#t + 1] = k end
    table.sort(t)
    return t
  end)(), ", "))
  for i, msg in ipairs(SIZES) do
    local r = drive("send " .. i, function() return c:send_bytes(msg) end, s)
    H.eq(r, true, "send " .. i .. " accepted")
    local got = drive("recv " .. i, function() return s:recv_bytes() end, c)
    H.ok(got == msg, "client -> server " .. i .. " (" .. #msg .. " bytes)")
    r = drive("send back " .. i, function() return s:send_bytes(got) end, c)
    H.eq(r, true, "send back accepted")
    got = drive("recv back " .. i, function() return c:recv_bytes() end, s)
    H.ok(got == msg, "server -> client " .. i)
  end
  for i, v in ipairs(VALUES) do
    H.eq(drive("send value", function() return c:send(v) end, s), true, "send value " .. i)
    local got = drive("recv value", function() return s:recv({ bytes = "marked" }) end, c)
    H.eq(mpconn.repr(got), mpconn.repr(v), "value " .. i)
  end
  c:close(); s:close(); l:close()
end)

H.test("non-blocking: a wrong CA is nil, message, 'TLS' from flush on both ends", function()
  local l = assert(mpconn.listen(H.address("tcp"), { authkey = KEY, nonblocking = true, tls = server_tls() }))
  local c = assert(mpconn.connect(l.address, { authkey = KEY, nonblocking = true,
    tls = { cafile = cert("other-ca.pem") } }))
  local s = drive("accept", function() c:flush(); return l:accept() end)
  local rc, mc, cc, rs, ms, cs
  for _ = 1, 100000 do
    if cc == nil or cc == "AGAIN" then rc, mc, cc = c:flush() end
    if cs == nil or cs == "AGAIN" then rs, ms, cs = s:flush() end
    if cc ~= "AGAIN" and cs ~= "AGAIN" then break end
  end
  H.fails("TLS", "certificate verify failed", rc, mc, cc, "client flush")
  H.fails("TLS", nil, rs, ms, cs, "server flush")
  -- The send of a failed connection: the same failure, not a hang.
  local r, _, code = c:send_bytes("x")
  H.eq(r, nil, "send after the failure")
  H.ok(code ~= "AGAIN", "not a want: " .. tostring(code))
  c:close(); s:close(); l:close()
end)

---------------------------------------------------------------------------
-- mpconn.cqueues
---------------------------------------------------------------------------
local has_cq, cqueues = pcall(require, "cqueues")
if not has_cq then
  H.skip("mpconn.cqueues over TLS", "cqueues is not installed")
else
  local mcq = require "mpconn.cqueues"
  H.test("mpconn.cqueues: TLS client coroutines and a TLS listener coroutine in one controller", function()
    local cq = cqueues.new()
    local l = assert(mcq.listen(H.address("tcp"), { authkey = KEY, timeout = 20, tls = server_tls() }))
    local served, failures, results = 0, {}, {}
    cq:wrap(function()
      for _ = 1, 3 do
        local c = assert(l:accept(20))
        cq:wrap(function()
          local n = 0
          while true do
            local msg, e, code = c:recv_bytes()
            if not msg then
              if code ~= "EOF" then failures[#failures + 1] = code .. " " .. tostring(e) end
              break
            end
            assert(c:send_bytes(msg))
            n = n + 1
          end
          if n > 0 then served = served + 1 end
          c:close()
        end)
      end
    end)
    -- A wrong CA first: nil, message, "TLS" in the client coroutine.
    cq:wrap(function()
      local c, m, code = mcq.connect(l.address, { authkey = KEY, timeout = 20, tls = { cafile = cert("other-ca.pem") } })
      results.wrong = { c, m, code }
      -- Then two good clients at once, 0 B .. 4 MiB each.
      for k = 1, 2 do
        cq:wrap(function()
          local cc = assert(mcq.connect(l.address, { authkey = KEY, timeout = 20, io_timeout = 60, tls = client_tls() }))
          local ok = true
          for _, s in ipairs(SIZES) do
            assert(cc:send_bytes(s))
            if cc:recv_bytes() ~= s then ok = false end
          end
          cc:close()
          results[k] = ok
        end)
      end
    end)
    local ok, err = cq:loop(120)
    H.ok(ok, "loop: " .. tostring(err))
    H.fails("TLS", "certificate verify failed", results.wrong[1], results.wrong[2], results.wrong[3], "wrong CA")
    H.eq(results[1], true, "client 1 got every echo")
    H.eq(results[2], true, "client 2 got every echo")
    H.eq(served, 2, "two clients served")
    H.eq(#failures, 1, "one failure on the listener's side: " .. table.concat(failures, "; "))
    H.match(failures[1], "^TLS", "it is a TLS failure")
    l:close()
  end)
end

os.execute("rm -rf " .. H.q(CERTS))
H.done()
