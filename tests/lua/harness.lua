-- A tiny test harness for the Lua suite: named tests, assertions that print
-- both operands, visible skips, and a last line "N passed, N failed, N
-- skipped" with a non-zero exit status on any failure.
local H = {}

local passed, failed, skipped = 0, 0, 0

-- A readable, byte-exact rendering of a value (strings as escaped bytes,
-- long strings abbreviated with their length).
function H.repr(v)
  if type(v) ~= "string" then return tostring(v) .. " (" .. (math.type(v) or type(v)) .. ")" end
  local function esc(s)
    return (s:gsub("[^%w%p ]", function(c) return string.format("\\x%02x", c:byte()) end))
  end
  if #v <= 48 then return '"' .. esc(v) .. '"' end
  return string.format('<%d bytes: "%s"..."%s">', #v, esc(v:sub(1, 16)), esc(v:sub(-16)))
end

-- Hex of short strings, length and edges of long ones (for "prints what it got").
function H.describe(s)
  local hex = (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
  if #s <= 64 then return string.format("%d bytes: %s", #s, hex) end
  return string.format("%d bytes: %s...%s", #s, hex:sub(1, 32), hex:sub(-32))
end

local function fail(msg, level) error(msg, (level or 1) + 1) end

function H.eq(got, want, what)
  if got ~= want or math.type(got) ~= math.type(want) then
    fail(string.format("%s: expected %s, got %s", what or "value", H.repr(want), H.repr(got)), 2)
  end
end

function H.ok(v, what)
  if not v then fail((what or "condition") .. ": expected a true value, got " .. H.repr(v), 2) end
  return v
end

function H.match(s, pattern, what)
  if type(s) ~= "string" or not s:find(pattern) then
    fail(string.format("%s: expected a string matching %q, got %s", what or "message", pattern, H.repr(s)), 2)
  end
end

-- Calls fn(...) expecting an error whose message matches pattern.
function H.raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then fail("expected an error matching " .. string.format("%q", pattern) .. ", got none", 2) end
  if not tostring(err):find(pattern) then
    fail(string.format("expected an error matching %q, got %s", pattern, tostring(err)), 2)
  end
  return err
end

-- Asserts the nil, message, code convention.
function H.fails(code, msgpattern, v, msg, c, what)
  if v ~= nil then fail((what or "call") .. ": expected nil, message, code; got " .. H.repr(v), 2) end
  if c ~= code then
    fail(string.format("%s: expected code %s, got %s (message %s)", what or "call", code, H.repr(c), H.repr(msg)), 2)
  end
  if msgpattern and not (type(msg) == "string" and msg:find(msgpattern)) then
    fail(string.format("%s: message %s does not match %q", what or "call", H.repr(msg), msgpattern), 2)
  end
end

function H.test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
    print("ok   - " .. name)
  else
    failed = failed + 1
    print("FAIL - " .. name .. "\n       " .. tostring(err):gsub("\n", "\n       "))
  end
  collectgarbage()
end

function H.skip(name, reason)
  skipped = skipped + 1
  print("SKIP: " .. name .. ": " .. reason)
end

function H.done()
  print(string.format("%d passed, %d failed, %d skipped", passed, failed, skipped))
  -- close = true: the state is closed, so every open object is finalized.
  os.exit(failed == 0 and passed > 0 and 0 or 1, true)
end

-- ---- processes and addresses ---------------------------------------------

H.lua = os.getenv("MPCONN_LUA") or "lua5.4"
H.dir = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."

function H.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function pid()
  local f = io.open("/proc/self/stat")
  local p = f and f:read("l"):match("^(%d+)") or tostring(os.time())
  if f then f:close() end
  return p
end
H.pid = pid()
local serial = 0

-- A fresh scratch address of the given kind: "tcp", "tcp6", "unix", "abstract".
function H.address(kind)
  serial = serial + 1
  if kind == "tcp" then return "127.0.0.1:0" end
  if kind == "tcp6" then return "[::1]:0" end
  if kind == "unix" then
    local dir = os.getenv("TMPDIR") or "/tmp"
    return string.format("%s/mpconn-lua-%s-%d.sock", dir, H.pid, serial)
  end
  if kind == "abstract" then return string.format("@mpconn-lua-%s-%d-%d", H.pid, serial, math.random(1, 1e9)) end
  error("unknown address kind " .. tostring(kind))
end

-- Starts a command in the background; its stdout+stderr are read by finish().
function H.spawn(cmd) return assert(io.popen(cmd .. " 2>&1", "r")) end

-- Waits for a spawned command: its whole output and whether it exited 0.
function H.finish(p)
  local out = p:read("a")
  local ok, how, code = p:close()
  return out, ok == true, code, how
end

-- True if path exists (sockets included, which io.open cannot open).
-- An echo peer (echo_peer.lua) in a second process, connected over a Unix
-- socket: messages larger than a socket buffer cannot make a round trip
-- inside one process.  Returns the connection and a function that closes
-- everything and returns the child's output and status.
function H.echo_pair(mpconn)
  local l = assert(mpconn.listen(H.address("unix"), { timeout = 20 }))
  local p = H.spawn(string.format("%s %s/echo_peer.lua %s", H.lua, H.dir, H.q(l.address)))
  local c, msg, code = l:accept(20)
  if not c then error("accept: " .. tostring(msg) .. " " .. tostring(code) .. "; child: " .. H.finish(p)) end
  c:set_timeout(60)
  return c, function()
    c:close()
    local out, ok = H.finish(p)
    l:close()
    return out, ok
  end
end

function H.file_exists(path)
  return os.execute("test -e " .. H.q(path)) == true
end

function H.hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

-- The byte strings every interop peer (Lua and Python) agrees on.
local all = {}
for i = 0, 255 do all[#all + 1] = string.char(i) end
H.ALL256 = table.concat(all)
H.MESSAGES = {
  "",
  "\0",
  H.ALL256,
  "hello\0world\255",
  string.rep(H.ALL256, 65):sub(1, 16385),
  string.rep(H.ALL256, 4096),
}

math.randomseed(os.time(), tonumber(H.pid) or 0)

return H
