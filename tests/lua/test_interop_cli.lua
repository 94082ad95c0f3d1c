-- Interop with the project's C command-line tool (build tree bin/mpconn):
-- Lua listener with `mpconn send`, Lua client with `mpconn listen --echo`,
-- with an authkey, a wrong key, over TCP, Unix paths and abstract names.
local H = require "harness"
local mpconn = require "mpconn"

local CLI = os.getenv("MPCONN_CLI") or (H.dir .. "/../../build-lua/bin/mpconn")

local function cli_usable()
  local p = io.popen(H.q(CLI) .. " --help 2>&1")
  local help = p:read("a")
  p:close()
  return help:find("mpconn send ADDRESS", 1, true) and help:find("--hex", 1, true)
end

-- Messages that fit on a command line (the 1 MiB one is left out).
local MSGS = { "", "\0", H.ALL256, "hello\0world\255", H.MESSAGES[5] }
local KEY = "cli\0key"

local function hexargs(list)
  local t = {}
  for i, s in ipairs(list) do t[i] = H.q(H.hex(s)) end
  return table.concat(t, " ")
end

local function lines_of(out)
  local t = {}
  for line in out:gmatch("[^\n]*") do t[#t + 1] = line end
  return t
end

-- Checks that the hex lines of the CLI's output are exactly list, in order.
local function expect_hex_lines(out, list, what)
  local want = {}
  for _, s in ipairs(list) do want[H.hex(s)] = (want[H.hex(s)] or 0) + 1 end
  local n = 0
  for _, line in ipairs(lines_of(out)) do
    if line:find("^%x*$") and want[line] and want[line] > 0 then
      want[line] = want[line] - 1
      n = n + 1
    end
  end
  -- The empty message is an empty line, which gmatch also yields at the end;
  -- count every expected line at least once.
  H.ok(n >= #list, what .. ": the tool printed all " .. #list .. " messages (found " .. n .. ")\n" .. out:sub(1, 400))
end

if not H.file_exists(CLI) then
  H.skip("Lua with the mpconn CLI", CLI .. " is not built")
elseif not cli_usable() then
  H.skip("Lua with the mpconn CLI", CLI .. " has no send/listen --hex commands yet")
else
  for _, kind in ipairs({ "tcp", "unix", "abstract" }) do
    H.test("a Lua listener receives byte-exact messages from `mpconn send` over " .. kind .. " with an authkey", function()
      local l = assert(mpconn.listen(H.address(kind), { authkey = KEY, timeout = 20 }))
      -- First a tool run without any key: the handshake fails on our side.
      local p = H.spawn(string.format("%s send %s --timeout 20 x", H.q(CLI), H.q(l.address)))
      local c, msg = l:accept(20)
      H.eq(c, nil, "a client without the key is refused (" .. tostring(msg) .. ")")
      H.finish(p)
      -- Now with the key, which has a zero byte: pass it as a file.
      local keyfile = os.tmpname()
      local f = assert(io.open(keyfile, "wb"))
      f:write(KEY)
      f:close()
      p = H.spawn(string.format("%s send %s --authkey-file %s --hex --timeout 20 --recv %d %s",
        H.q(CLI), H.q(l.address), H.q(keyfile), #MSGS, hexargs(MSGS)))
      local code
      c, msg, code = l:accept(20)
      if not c then error("accept: " .. tostring(msg) .. " " .. tostring(code) .. "; tool said: " .. H.finish(p)) end
      c:set_timeout(20)
      for i, want in ipairs(MSGS) do
        local s, m, cd = c:recv_bytes()
        if not s then error("message " .. i .. ": " .. tostring(m) .. " " .. tostring(cd)) end
        H.eq(s, want, "message " .. i)
        assert(c:send_bytes(s))
      end
      local out, ok = H.finish(p)
      os.remove(keyfile)
      H.ok(ok, "tool exit status; output: " .. out:sub(1, 300))
      expect_hex_lines(out, MSGS, "echoes printed by the tool")
      c:close()
      l:close()
    end)

    H.test("a Lua client's messages come back byte-exact from `mpconn listen --echo` over " .. kind, function()
      local p = H.spawn(string.format("%s listen %s --authkey %s --hex --echo --count %d --timeout 20",
        H.q(CLI), H.q(H.address(kind)), H.q("plain key"), #MSGS))
      local first = p:read("l") or ""
      local addr = first:match("^listening on (.*)$")
      if not addr then error("the tool did not start: " .. first .. (p:read("a") or "")) end
      local c = assert(mpconn.connect(addr, { authkey = "plain key", timeout = 20, io_timeout = 20 }))
      assert(c:send_many(MSGS))
      for i, want in ipairs(MSGS) do H.eq(c:recv_bytes(), want, "echo " .. i) end
      c:close()
      local out, ok = H.finish(p)
      H.ok(ok, "tool exit status; output: " .. out:sub(1, 300))
      expect_hex_lines(out, MSGS, "messages printed by the tool")
    end)
  end

  H.test("a wrong key is nil, message, AUTH for a Lua client of `mpconn listen`", function()
    local p = H.spawn(string.format("%s listen %s --authkey right --count 1 --timeout 20", H.q(CLI),
      H.q(H.address("tcp"))))
    local addr = (p:read("l") or ""):match("^listening on (.*)$")
    H.fails("AUTH", "digest", mpconn.connect(addr, { authkey = "wrong", timeout = 20 }))
    -- The tool keeps serving: a right-key client gets through.
    local c = assert(mpconn.connect(addr, { authkey = "right", timeout = 20 }))
    assert(c:send_bytes("ok"))
    local out, ok = H.finish(p)
    H.ok(ok, "tool exit status")
    H.match(out, "ok", "tool output")
    c:close()
  end)

  H.test("a Lua listener rejects `mpconn send` with a wrong key, and the tool exits with status 4", function()
    local l = assert(mpconn.listen(H.address("tcp"), { authkey = "right", timeout = 20 }))
    local p = H.spawn(string.format("%s send %s --authkey wrong --timeout 20 hello", H.q(CLI), H.q(l.address)))
    H.fails("AUTH", "digest", l:accept(20))
    local _, ok, code = H.finish(p)
    H.eq(ok, false, "tool failed")
    H.eq(code, 4, "tool exit status")
    l:close()
  end)
end

H.done()
