-- Child process for the socket tests: connects to ADDRESS (with KEYHEX as
-- authkey unless "-", and DIALECT unless "-"), echoes every message back until
-- end of file, and reports on stdout:
--   ECHOED <count>                      after end of file (exit 0)
--   CONNECT-FAILED <code> <message>     when connect fails (exit 3)
--   RECV-FAILED <code> <message>        on any other failure (exit 4)
local mpconn = require "mpconn"
local address, keyhex, dialect = arg[1], arg[2] or "-", arg[3] or "-"
local key = keyhex ~= "-" and (keyhex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)) or nil
local c, msg, code = mpconn.connect(address, {
  authkey = key, dialect = dialect ~= "-" and dialect or nil, timeout = 20, io_timeout = 60,
})
if not c then
  print("CONNECT-FAILED " .. tostring(code) .. " " .. tostring(msg))
  os.exit(3)
end
local n = 0
while true do
  local s, m, cd = c:recv_bytes()
  if not s then
    if cd == "EOF" then break end
    print("RECV-FAILED " .. tostring(cd) .. " " .. tostring(m))
    os.exit(4)
  end
  assert(c:send_bytes(s))
  n = n + 1
end
c:close()
print("ECHOED " .. n)
os.exit(0)
