-- Values between Lua and unmodified CPython (multiprocessing.connection from
-- the standard library): every case of values_cases.lua both ways, a Lua
-- client with a CPython Listener and a Lua listener with a CPython Client;
-- CPython sends with send() and with pickle.dumps at every protocol it has
-- (0-5); Python 2.7 receives protocol 2.  Hostile pickles that would call
-- os.system are refused with the opcode and the global named, nothing runs,
-- and the next value on the connection is received.  Interpreters that are
-- missing are skipped visibly.
local H = require "harness"
local mpconn = require "mpconn"
local C = require "values_cases"

local PEER = H.dir .. "/py_values_peer.py"
local KEY = "values\0key\255"

local PYTHONS = {
  { exe = os.getenv("MPCONN_STOCK_PYTHON") or "python3", protocols = { 0, 1, 2, 3, 4, 5 } },
  { exe = "/root/.pyenv/versions/3.13.0/bin/python", protocols = { 0, 1, 2, 3, 4, 5 } },
  { exe = "/root/.pyenv/versions/2.7.18/bin/python", protocols = { 0, 1, 2 }, send_protocol = 2, py2 = true },
}

local function version_of(exe)
  local p = io.popen(H.q(exe) .. [[ -c "import sys; print('%d.%d' % sys.version_info[:2])" 2>/dev/null]])
  local v = p:read("l")
  p:close()
  return v
end

-- Runs body(conn, py) against a peer in the given role ("listen": Python
-- listens, Lua connects; "client": the other way round).
local function with_peer(py, role, body)
  local opts = { authkey = KEY, timeout = 30, dialect = py.py2 and "legacy" or nil }
  local conn, p
  if role == "listen" then
    p = H.spawn(string.format("%s %s listen %s %s", H.q(py.exe), H.q(PEER), H.q(H.address("tcp")), H.hex(KEY)))
    local line = p:read("l") or ""
    local addr = line:match("^ADDRESS (.*)$")
    if not addr then error("python listener did not start: " .. line .. (p:read("a") or "")) end
    conn = assert(mpconn.connect(addr, opts))
  else
    local l <close> = assert(mpconn.listen(H.address("tcp"), opts))
    p = H.spawn(string.format("%s %s client %s %s", H.q(py.exe), H.q(PEER), H.q(l.address), H.hex(KEY)))
    local c, msg, code = l:accept(30)
    if not c then error("accept: " .. tostring(msg) .. " " .. tostring(code) .. "; python said: " .. H.finish(p)) end
    conn = c
  end
  conn:set_timeout(30)
  local ok, err = pcall(body, conn)
  if ok then assert(conn:send_bytes("BYE")) end
  conn:close()
  local out, pok = H.finish(p)
  if not ok then error(tostring(err) .. "\n       python output:\n" .. out, 0) end
  H.match(out, "PY%-OK", "python output")
  H.ok(pok, "python exit status")
  return out
end

-- Every TO_PY case arrives in the stock interpreter's recv() as the
-- documented value (strict comparison done in Python; its repr printed).
local function check_to_python(conn, py)
  for _, case in ipairs(C.TO_PY) do
    local name, make, expr = case[1], case[2], case[3]
    assert(conn:send_bytes("CHECK " .. expr))
    assert(conn:send(make(), py.send_protocol and { protocol = py.send_protocol } or nil))
    local reply = assert(conn:recv_bytes())
    if not reply:find("^OK ") then error(name .. ": " .. reply) end
    if #reply < 100 then print("       " .. name .. ": Python got " .. reply:sub(4)) end
  end
end

-- Every FROM_PY case, sent by the stock interpreter with send() and at
-- every protocol, arrives in Lua as the documented value.
local function check_from_python(conn, py)
  local n = 0
  for _, case in ipairs(C.FROM_PY) do
    local expr, want, opts = case[1], case[2](), case[3]
    for _, proto in ipairs({ "default", table.unpack(py.protocols) }) do
      assert(conn:send_bytes("SEND " .. proto .. " " .. expr))
      local got, msg, code = conn:recv(opts)
      if got == nil and msg ~= nil then error(string.format("%s at protocol %s: %s %s", expr, proto, msg, code)) end
      if not C.deq(got, want) then
        error(string.format("%s at protocol %s: got %s, expected %s", expr, proto, C.show(got), C.show(want)))
      end
      n = n + 1
    end
  end
  print(string.format("       %d values received as documented", n))
end

-- The classic os.system pickle and a __reduce__ object: refused by name,
-- nothing runs, and the connection still delivers the next value.
local function check_hostile(conn, py)
  local marker = string.format("%s/mpconn-lua-marker-%s-%d", os.getenv("TMPDIR") or "/tmp", H.pid, math.random(1, 1e9))
  os.remove(marker)
  local cases = {
    { "CLASSIC " .. marker, "GLOBAL", "os%.system" },
    { "REDUCE 2 " .. marker, "GLOBAL", "posix%.system" },
  }
  if not py.py2 then cases[#cases + 1] = { "REDUCE 4 " .. marker, "STACK_GLOBAL", "posix%.system" } end
  for _, case in ipairs(cases) do
    assert(conn:send_bytes(case[1]))
    local v, msg, code = conn:recv()
    print("       " .. case[1]:match("^%S+ ?%d?") .. ": " .. tostring(msg))
    H.fails("VALUE", "refused opcode " .. case[2] .. " of global '" .. case[3] .. "' at offset %d+", v, msg, code,
      case[1])
    H.ok(not H.file_exists(marker), "the marker file does not exist")
    assert(conn:send_bytes("SEND default u'after'"))
    H.eq(conn:recv(), "after", "the next value on the same connection")
  end
end

for _, py in ipairs(PYTHONS) do
  local v = version_of(py.exe)
  if not v then
    H.skip("values with " .. py.exe, "not installed")
  else
    local label = "CPython " .. v
    for _, role in ipairs({ "listen", "client" }) do
      local how = role == "listen" and ("Lua client, " .. label .. " Listener")
        or ("Lua listener, " .. label .. " Client")
      H.test(how .. ": Lua values arrive in recv() as the documented Python values", function()
        with_peer(py, role, function(conn) check_to_python(conn, py) end)
      end)
      H.test(how .. ": values CPython sends at every protocol arrive in Lua as documented", function()
        with_peer(py, role, function(conn) check_from_python(conn, py) end)
      end)
    end
    H.test(label .. ": a pickle calling os.system is refused naming the opcode and global, the next value arrives",
      function()
        with_peer(py, "client", function(conn) check_hostile(conn, py) end)
      end)
  end
end

H.done()
