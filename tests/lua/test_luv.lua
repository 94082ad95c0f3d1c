-- luv (issue 17): connections driven by uv.new_poll(obj:pollfd()) and
-- obj:events(), retrying after spurious wake-ups, with no blocking call.
--   * the examples: examples/lua/luv_echo.lua serves, at once, two
--     examples/lua/luv_client.lua (0 B .. 16 MiB byte-exact, one of them
--     woken spuriously every 2 ms) and 20 stock CPython clients (threads,
--     authkey, 20 round trips each);
--   * in one process: a non-blocking listener, 8 clients and their server
--     ends on one luv loop, every callback also called by a 1 ms timer for
--     nothing, values and bytes up to 8 MiB, a wrong key failing alone.
local H = require "harness"
local ok_uv, uv = pcall(require, "luv")
if not ok_uv then
  print("SKIP: lua-luv is not installed (apt-get install lua-luv)")
  os.exit(0)
end
local mpconn = require "mpconn"

local EX = H.dir .. "/../../examples/lua"
local PY = os.getenv("MPCONN_STOCK_PYTHON") or "python3"
local KEY = "luv key"

H.test("examples/lua/luv_echo.lua serves two luv_client.lua and 20 CPython clients at once", function()
  local srv = H.spawn(string.format("%s %s 127.0.0.1:0 %s 22", H.lua, H.q(EX .. "/luv_echo.lua"), H.q(KEY)))
  local line = srv:read("l") or ""
  local addr = line:match("^Listening on (.*)$")
  H.ok(addr, "listener started: " .. line)
  local c1 = H.spawn(string.format("%s %s %s %s", H.lua, H.q(EX .. "/luv_client.lua"), H.q(addr), H.q(KEY)))
  local c2 = H.spawn(string.format("MPCONN_LUV_SPURIOUS=1 %s %s %s %s", H.lua, H.q(EX .. "/luv_client.lua"),
    H.q(addr), H.q(KEY)))
  local py = H.spawn(string.format("%s %s clients %s %s 20 20 echo", H.q(PY), H.q(H.dir .. "/py_cq_peer.py"),
    H.q(addr), H.hex(KEY)))
  for name, p in pairs({ client = c1, spurious_client = c2 }) do
    local out, ok = H.finish(p)
    print("       " .. name .. ": " .. out:gsub("\n$", ""))
    H.match(out, "^Echoed 10 messages, 26282242 bytes; timer ticked %d+ times\n$", name .. " output")
    H.ok(ok, name .. " exit status")
  end
  local out, ok = H.finish(py)
  H.match(out, "PY%-OK 20", "CPython clients")
  H.ok(ok, "CPython exit status")
  local sout, sok = H.finish(srv)
  H.match(sout, "Served 22 clients", "server output")
  H.ok(sok, "server exit status")
end)

-- Runs fn on a poll of obj, re-armed with obj:events() after each call
-- (fn returns true when done); a 1 ms timer calls it for nothing too.
local function drive(obj, fn, handles)
  local poll = uv.new_poll(obj:pollfd())
  local spurious = uv.new_timer()
  local done = false
  local function cb(err)
    assert(not err, err)
    if done then return end
    if fn() then
      done = true
      poll:close(); spurious:close()
      return
    end
    poll:start(obj:events(), cb)
  end
  handles[#handles + 1] = function() if not done then done = true; poll:close(); spurious:close() end end
  spurious:start(1, 1, cb)
  cb()
end

H.test("one luv loop: listener, 8 clients, their servers, spurious wake-ups, a wrong key alone", function()
  local l = assert(mpconn.listen(H.address("unix"), { authkey = KEY, backlog = 16 }))
  l:set_timeout(0)
  local handles, results = {}, {}
  local sizes = { 0, 1, 1025, 70000, (4 << 20) + 1, 8 << 20 }
  local NCLIENTS = 8
  local ticks = 0
  local ticker = uv.new_timer()
  ticker:start(1, 1, function() ticks = ticks + 1 end)
  local servers_done = 0
  -- Server side: echo each connection until end of file; a wrong key ends
  -- that connection only.
  local accepted = 0
  drive(l, function()
    while true do
      local s, msg, code = l:accept()
      if not s then
        assert(code == "AGAIN", msg)
        return false
      end
      accepted = accepted + 1
      drive(s, function()
        while true do
          local ok, m, code2 = s:flush()
          if not ok then
            if code2 == "AGAIN" then return false end
            results[#results + 1] = "server: " .. code2
            s:close(); servers_done = servers_done + 1
            return true
          end
          local r
          r, m, code2 = s:recv_bytes()
          if r == nil then
            if code2 == "AGAIN" then return false end
            if code2 ~= "EOF" then results[#results + 1] = "server: " .. code2 end
            s:close(); servers_done = servers_done + 1
            return true
          end
          assert(s:send_bytes(r))
        end
      end, handles)
      if accepted == NCLIENTS + 1 then return true end
    end
  end, handles)
  -- Clients: even ones bytes, odd ones values; the last one a wrong key.
  local clients_ok = 0
  for k = 1, NCLIENTS + 1 do
    local c = assert(mpconn.connect(l.address, { authkey = k <= NCLIENTS and KEY or "wrong", nonblocking = true }))
    local i, sent = 1, false
    drive(c, function()
      while i <= #sizes do
        local n = sizes[i]
        local want = k % 2 == 0 and string.rep(string.char(k, i), n // 2 + 1):sub(1, n)
          or mpconn.list { k, i, string.rep("v", n // 4) }
        if not sent then
          local ok, msg, code
          if k % 2 == 0 then ok, msg, code = c:send_bytes(want) else ok, msg, code = c:send(want) end
          if not ok then
            if code == "AGAIN" then return false end
            results[#results + 1] = "client " .. k .. ": " .. code
            c:close()
            return true
          end
          sent = true
        end
        local r, msg, code
        if k % 2 == 0 then r, msg, code = c:recv_bytes() else r, msg, code = c:recv() end
        if r == nil then
          if code == "AGAIN" then return false end
          results[#results + 1] = "client " .. k .. ": " .. code
          c:close()
          return true
        end
        if k % 2 == 0 then
          assert(r == want, "bytes " .. n)
        else
          assert(r[1] == k and r[2] == i and r[3] == want[3], "value " .. n)
        end
        i, sent = i + 1, false
      end
      clients_ok = clients_ok + 1
      c:close()
      return true
    end, handles)
  end
  local guard = uv.new_timer()
  local stopper = uv.new_timer()
  -- (MPCONN_SLOW: a factor for runs under valgrind, 20-50x slower.)
  guard:start(60000 * (tonumber(os.getenv("MPCONN_SLOW")) or 1), 0, function()
    for _, h in ipairs(handles) do h() end
    ticker:close(); stopper:close(); guard:close()
  end)
  stopper:start(1, 1, function()
    if servers_done == NCLIENTS + 1 and clients_ok + #results >= NCLIENTS + 1 then
      stopper:close(); guard:close(); ticker:close()
    end
  end)
  uv.run()
  l:close()
  H.eq(clients_ok, NCLIENTS, "clients done (failures: " .. table.concat(results, ", ") .. ")")
  table.sort(results)
  H.eq(table.concat(results, ", "), "client " .. (NCLIENTS + 1) .. ": AUTH, server: AUTH", "the wrong key fails alone, on both sides")
  H.ok(ticks >= 5, "the timer ticked (" .. ticks .. ")")
end)

H.done()
