-- Interop with unmodified CPython (multiprocessing.connection from the
-- standard library): Lua listener with CPython Clients, Lua client with
-- CPython Listeners, with and without an authkey, a wrong key each way, over
-- TCP, Unix paths and abstract names.  Interpreters that are missing are
-- skipped visibly.
local H = require "harness"
local mpconn = require "mpconn"

local PEER = H.dir .. "/py_peer.py"

-- Stock interpreters, then the project's own Python package (the python
-- that tests/run_all passes as MPCONN_PYTHON) when it is importable.
local CANDIDATES = {
  { label = "machine python3, CPython ", exe = os.getenv("MPCONN_STOCK_PYTHON") or "python3", all_kinds = true },
  { label = "CPython ", exe = "/root/.pyenv/versions/3.12.1/bin/python" },
  { label = "CPython ", exe = "/root/.pyenv/versions/3.13.0/bin/python" },
  { label = "mpconn Python package on ", exe = os.getenv("MPCONN_PYTHON") or "", impl = "mpconn" },
}

local function version_of(cand)
  if cand.exe == "" then return nil, "MPCONN_PYTHON is not set" end
  local check = cand.impl == "mpconn" and "import mpconn; " or ""
  local p = io.popen(H.q(cand.exe) .. ' -c "' .. check
    .. [[import sys; print('%d.%d' % sys.version_info[:2])" 2>/dev/null]])
  local v = p:read("l")
  p:close()
  if not v then
    return nil, cand.exe .. (cand.impl and " cannot import mpconn" or " is not installed")
  end
  return v
end

local function py(cand, mode, address, keyhex)
  return H.spawn(string.format("PY_PEER_IMPL=%s %s %s %s %s %s", cand.impl or "stdlib", H.q(cand.exe),
    H.q(PEER), mode, H.q(address), keyhex or "-"))
end

local KEY = "interop\0key\255"

-- Lua listener, CPython client.
local function lua_listener(cand, kind, key)
  local l = assert(mpconn.listen(H.address(kind), { authkey = key, timeout = 20 }))
  local p = py(cand, "client", l.address, key and H.hex(key))
  local c, msg, code = l:accept(30)
  if not c then error("accept: " .. tostring(msg) .. " " .. tostring(code) .. "; python said: " .. H.finish(p)) end
  c:set_timeout(30)
  local got = {}
  for i, want in ipairs(H.MESSAGES) do
    local s, m, cd = c:recv_bytes()
    if s == nil then error("message " .. i .. ": " .. tostring(m) .. " " .. tostring(cd)) end
    print("       received " .. H.describe(s))
    H.eq(s, want, "message " .. i .. " byte-exact")
    got[i] = s
  end
  H.eq(c:send_many(got), true, "echo")
  H.fails("EOF", nil, c:recv_bytes()) -- the client closes after checking
  c:close()
  local out, ok = H.finish(p)
  H.match(out, "PY%-OK", "python output")
  H.ok(ok, "python exit status")
  l:close()
end

-- CPython listener, Lua client.
local function lua_client(cand, kind, key)
  local address = H.address(kind)
  local p = py(cand, "listen", address, key and H.hex(key))
  local line = p:read("l")
  local real = line and line:match("^ADDRESS (.*)$")
  if not real then error("python listener did not start: " .. tostring(line) .. (p:read("a") or "")) end
  local c, msg, code = mpconn.connect(real, { authkey = key, timeout = 20, io_timeout = 30 })
  if not c then error("connect: " .. tostring(msg) .. " " .. tostring(code) .. "; python said: " .. H.finish(p)) end
  for _, s in ipairs(H.MESSAGES) do H.eq(c:send_bytes(s), true, "send") end
  for i, want in ipairs(H.MESSAGES) do H.eq(c:recv_bytes(), want, "echo " .. i) end
  c:close()
  local out, ok = H.finish(p)
  H.match(out, "PY%-OK", "python output (the CPython side checks every byte)")
  H.ok(ok, "python exit status")
end

local function lua_client_badkey(cand)
  local p = py(cand, "listen-badkey", H.address("tcp"), H.hex("the right key"))
  local real = p:read("l"):match("^ADDRESS (.*)$")
  H.fails("AUTH", "digest", mpconn.connect(real, { authkey = "a wrong key", timeout = 20 }))
  local out, ok = H.finish(p)
  H.match(out, "PY%-AUTHERROR", "python side")
  H.ok(ok, "python exit status")
end

local function lua_listener_badkey(cand)
  local l = assert(mpconn.listen(H.address("tcp"), { authkey = "the right key", timeout = 20 }))
  local p = py(cand, "client-badkey", l.address, H.hex("a wrong key"))
  H.fails("AUTH", "digest", l:accept(30))
  local out, ok = H.finish(p)
  H.match(out, "PY%-AUTHERROR", "python side")
  H.ok(ok, "python exit status")
  l:close()
end

for _, cand in ipairs(CANDIDATES) do
  local v, why = version_of(cand)
  if not v then
    H.skip(cand.label .. "interop", why)
  else
    local label = cand.label .. v
    H.test("a Lua listener receives byte-exact messages from a " .. label .. " Client with an authkey",
      function() lua_listener(cand, "tcp", KEY) end)
    H.test("a Lua client's messages reach a " .. label .. " Listener byte-exact with an authkey",
      function() lua_client(cand, "tcp", KEY) end)
    H.test("a Lua client with a wrong key gets nil, message, AUTH from a " .. label .. " Listener",
      function() lua_client_badkey(cand) end)
    H.test("a Lua listener returns nil, message, AUTH for a " .. label .. " Client with a wrong key",
      function() lua_listener_badkey(cand) end)
    if cand.all_kinds or cand.impl then
      for _, kind in ipairs({ "unix", "abstract" }) do
        H.test("Lua listener and " .. label .. " Client over " .. kind .. " with an authkey",
          function() lua_listener(cand, kind, KEY) end)
        H.test("Lua client and " .. label .. " Listener over " .. kind .. " with an authkey",
          function() lua_client(cand, kind, KEY) end)
      end
      H.test("Lua listener and " .. label .. " Client without an authkey",
        function() lua_listener(cand, "tcp", nil) end)
      H.test("Lua client and " .. label .. " Listener without an authkey",
        function() lua_client(cand, "tcp", nil) end)
    end
  end
end

H.done()
