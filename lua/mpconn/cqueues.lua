--- mpconn.cqueues: mpconn's API for cqueues coroutines.
--
--   local cqueues = require "cqueues"
--   local mpconn = require "mpconn.cqueues"
--   local cq = cqueues.new()
--   cq:wrap(function()
--     local l = assert(mpconn.listen("127.0.0.1:6000", {authkey = "secret"}))
--     while true do
--       local c = assert(l:accept())
--       cq:wrap(function()                 -- one coroutine per client
--         for msg in c:messages() do c:send_bytes(msg) end
--         c:close()
--       end)
--     end
--   end)
--   assert(cq:loop())
--
-- The same calls, arguments and results as require "mpconn" (lua/mpconn.lua);
-- a call that would wait yields to the cqueues controller (cqueues.poll on
-- the object, as cqueues.socket does) instead of blocking the Lua state, so
-- one controller serves many connections.  Outside a cqueues coroutine the
-- calls still work, waiting through cqueues' own poller.
--
-- Underneath, every connection and listener is a plain mpconn object in
-- non-blocking mode (set_timeout(0)); lua/README.md "Event loops" has the
-- contract.  Differences from the blocking module:
--   * listener:accept() returns as soon as a client is connected; its
--     handshake finishes in the connection's first call (or c:flush()),
--     inside the coroutine that serves it, so a client that stalls in the
--     handshake holds up nobody.  A wrong key is that call's
--     nil, message, "AUTH".  The listener's handshake_timeout (or timeout)
--     bounds the handshake from accept on.
--   * connect's deadline (opts.timeout, or connect_timeout plus
--     handshake_timeout) covers the connect and the handshake together.
--   * A deadline (set_timeout(seconds), opts.io_timeout, accept(timeout),
--     poll(timeout)) that runs out returns nil, "<call>: timed out",
--     "TIMEOUT" and breaks nothing: a message received in part stays
--     inside the connection for the next receive; a send that timed out
--     before its message was accepted sent nothing of it, one that timed
--     out while its accepted message was still being written leaves the
--     rest queued whole, written by the next call or c:flush().
--   * A send returns once its message is written to the kernel (as a
--     blocking send), so closing after it loses nothing.
--   * set_timeout(0) returns nil, "wantread"/"wantwrite", "AGAIN" instead
--     of yielding, as the plain module does.
--   * close() (and collection) cancel the descriptor in every cqueues
--     controller (cqueues.cancel) before closing it, as cqueues requires,
--     which wakes any coroutine polling it (its call then raises "closed").
--   * c:inner() is the plain non-blocking connection.
-- Values helpers (null, list, dict, encode, decode, repr, ...) are those of
-- require "mpconn".

local mpconn = require "mpconn"
local cqueues = require "cqueues"

local type, error, setmetatable, getmetatable, select, rawget =
  type, error, setmetatable, getmetatable, select, rawget
local cq_poll, cq_cancel, monotime = cqueues.poll, cqueues.cancel, cqueues.monotime
local huge, format = math.huge, string.format

local M = setmetatable({}, { __index = mpconn })
M._VERSION = mpconn._VERSION

local Conn = {}
local Conn_mt = { __name = "mpconn.cqueues.Connection", __index = Conn }
local Listener = {}
local Listener_mt = { __name = "mpconn.cqueues.Listener", __index = Listener }

-- Seconds -> seconds, nil for "no limit" (nil, negative, math.huge).
local function secs(t, n, fname)
  if t == nil then return nil end
  if type(t) ~= "number" or t ~= t then
    error(format("bad argument #%d to '%s' (number of seconds expected, got %s)", n, fname,
      t ~= t and "NaN" or type(t)), 3)
  end
  if t < 0 or t == huge then return nil end
  return t
end

local function opt_secs(v)
  if type(v) ~= "number" or v ~= v or v < 0 or v == huge then return nil end
  return v
end

local function inner(self, what)
  local c = type(self) == "table" and rawget(self, "_c")
  if not c then
    if getmetatable(self) ~= Conn_mt and getmetatable(self) ~= Listener_mt then
      error(format("bad self to '%s' (mpconn.cqueues object expected, got %s)", what, type(self)), 3)
    end
    error(format("%s: %s is closed", what, getmetatable(self) == Listener_mt and "listener" or "connection"), 3)
  end
  return c
end

-- Waits (yields inside a cqueues coroutine) until self's descriptor is
-- ready for self:events() or the deadline passes.  False when it passed.
local function wait(self, deadline)
  if deadline then
    if monotime() >= deadline then return false end
    self._deadline = deadline
  end
  cq_poll(self)
  self._deadline = nil
  return not deadline or monotime() < deadline
end

local function timed_out(what) return nil, what .. ": timed out", "TIMEOUT" end

-- The deadline of a call that starts now: the per-call timeout, and for a
-- connection whose handshake may still run, the handshake's deadline.
local function call_deadline(self, c)
  local t = self._timeout
  local d = t and monotime() + t
  local hs = self._hs_deadline
  if hs then
    -- flush() says whether anything (the handshake) is still in progress.
    local ok, e, code = c:flush()
    if ok then self._hs_deadline = nil
    elseif code ~= "AGAIN" then return nil, e, code
    elseif not d or hs < d then d = hs end
  end
  return d or false
end

-- Runs c[name](c, ...) until it stops returning a want, waiting between
-- tries; then, for sends, until the output is written.
local function run(self, name, is_send, ...)
  local c = inner(self, name)
  local r, e, code = c[name](c, ...)
  if code ~= "AGAIN" then
    if not is_send or r == nil then
      if self._hs_deadline and code == nil then self._hs_deadline = nil end
      return r, e, code
    end
  elseif self._nb then
    return r, e, code
  end
  local deadline, e2, code2 = call_deadline(self, c)
  if deadline == nil then return nil, e2, code2 end
  while code == "AGAIN" do
    if not wait(self, deadline) then return timed_out(name) end
    c = inner(self, name)
    r, e, code = c[name](c, ...)
  end
  if code == nil and self._hs_deadline then self._hs_deadline = nil end
  if r == nil or not is_send then return r, e, code end
  -- The send was accepted: write what it left queued.
  if self._nb then return r end
  repeat
    r, e, code = c:flush()
    if code ~= "AGAIN" then break end
    if not wait(self, deadline) then return timed_out(name) end
    c = inner(self, name)
  until false
  if r and self._hs_deadline then self._hs_deadline = nil end
  return r, e, code
end

local function wrap_conn(c, timeout, hs_timeout)
  c:set_timeout(0)
  return setmetatable({ _c = c, _timeout = timeout,
    _hs_deadline = hs_timeout and monotime() + hs_timeout or nil }, Conn_mt)
end

function Conn:send_bytes(...) return run(self, "send_bytes", true, ...) end
function Conn:send_many(...) return run(self, "send_many", true, ...) end
function Conn:send(...)
  if select("#", ...) == 0 then return run(self, "send", true) end -- raises as mpconn does
  return run(self, "send", true, ...)
end
function Conn:recv_bytes(...) return run(self, "recv_bytes", false, ...) end
function Conn:recv(...) return run(self, "recv", false, ...) end
function Conn:deliver_challenge(...) return run(self, "deliver_challenge", true, ...) end
function Conn:answer_challenge(...) return run(self, "answer_challenge", true, ...) end

--- c:flush([timeout]) -> true | nil, message, code: finishes the connect,
-- the handshake and queued output (a failed handshake: nil, message, "AUTH").
function Conn:flush(timeout)
  inner(self, "flush")
  local t = secs(timeout, 1, "flush")
  local saved = self._timeout
  if timeout ~= nil then self._timeout = t end
  local r, e, code = run(self, "flush", false)
  self._timeout = saved
  if r then self._hs_deadline = nil end
  return r, e, code
end

--- c:messages([maxlength]) -> an iterator of received messages, ending at
-- end of file (a failure raises).
function Conn:messages(maxlength)
  return function()
    local s, e, code = self:recv_bytes(maxlength)
    if s == nil and code ~= "EOF" then error(e, 2) end
    return s
  end
end

--- c:poll([timeout]) -> boolean: whether a message (or end of file) is
-- waiting; waits (yields) up to timeout seconds (default 0).
function Conn:poll(timeout)
  local c = inner(self, "poll")
  local t = secs(timeout, 1, "poll") or (timeout == nil and 0 or nil)
  if c:pending() or c:poll(0) then return true end
  if t == 0 or self._nb then return false end
  local deadline = t and monotime() + t
  self._events = "r"
  repeat
    local ok = wait(self, deadline)
    c = rawget(self, "_c")
    if not c then self._events = nil; inner(self, "poll") end
    if c:pending() or c:poll(0) then self._events = nil; return true end
  until not ok
  self._events = nil
  return false
end

--- c:set_timeout(seconds | nil): the deadline of each call (nil, negative,
-- math.huge: none); 0: calls return nil, "wantread"/"wantwrite", "AGAIN".
function Conn:set_timeout(t)
  inner(self, "set_timeout")
  if t == 0 then
    self._nb, self._timeout = true, nil
  else
    self._nb, self._timeout = nil, secs(t, 1, "set_timeout")
  end
end

-- The cqueues pollable protocol.
function Conn:pollfd() return inner(self, "pollfd"):pollfd() end
function Conn:events() return self._events or inner(self, "events"):events() end
function Conn:timeout()
  inner(self, "timeout")
  local d = self._deadline
  if not d then return nil end
  d = d - monotime()
  return d > 0 and d or 0
end

for _, name in ipairs({ "fileno", "pending", "is_readable", "is_writable", "peer", "buffered" }) do
  Conn[name] = function(self) local c = inner(self, name); return c[name](c) end
end
function Conn:is_closed()
  if getmetatable(self) ~= Conn_mt then inner(self, "is_closed") end
  return rawget(self, "_c") == nil
end
function Conn:is_blocking() inner(self, "is_blocking"); return not self._nb end
function Conn:inner() return inner(self, "inner") end
function Conn:recv_bytes_into() return inner(self, "recv_bytes_into"):recv_bytes_into() end

local function close_inner(self, key)
  local o = rawget(self, key)
  if o then
    self[key] = nil
    if not o:is_closed() then
      cq_cancel(o:pollfd())
      o:close()
    end
  end
end

function Conn:close()
  if getmetatable(self) ~= Conn_mt then inner(self, "close") end
  close_inner(self, "_c")
end

--- c:detach() -> fd (cancelled in cqueues; the descriptor is left
-- non-blocking).
function Conn:detach()
  local c = inner(self, "detach")
  self._c = nil
  cq_cancel(c:pollfd())
  return c:detach()
end

Conn_mt.__gc = function(self) close_inner(self, "_c") end
Conn_mt.__close = Conn_mt.__gc
Conn_mt.__tostring = function(self)
  local c = rawget(self, "_c")
  return c and format("mpconn.cqueues.Connection (fd %d)", c:fileno()) or "mpconn.cqueues.Connection (closed)"
end

---------------------------------------------------------------------------
-- Listener
---------------------------------------------------------------------------

--- l:accept([timeout]) -> conn | nil, message, code: waits (yields) for a
-- client; the connection's handshake finishes in its first call.
function Listener:accept(timeout)
  local l = inner(self, "accept")
  local t
  if timeout ~= nil then t = secs(timeout, 1, "accept") else t = self._timeout end
  local c, e, code = l:accept()
  if code == "AGAIN" and not self._nb then
    local deadline = t and monotime() + t
    repeat
      if not wait(self, deadline) then return timed_out("accept") end
      l = inner(self, "accept")
      c, e, code = l:accept()
    until code ~= "AGAIN"
  end
  if not c then return c, e, code end
  return wrap_conn(c, self._io_timeout, self._hs_timeout)
end

function Listener:set_timeout(t)
  inner(self, "set_timeout")
  if t == 0 then
    self._nb, self._timeout = true, nil
  else
    self._nb, self._timeout = nil, secs(t, 1, "set_timeout")
  end
end
function Listener:pollfd() return inner(self, "pollfd"):pollfd() end
function Listener:events() inner(self, "events"); return "r" end
Listener.timeout = Conn.timeout
function Listener:fileno() return inner(self, "fileno"):fileno() end
function Listener:is_blocking() inner(self, "is_blocking"); return not self._nb end
function Listener:inner() return inner(self, "inner") end
function Listener:is_closed()
  if getmetatable(self) ~= Listener_mt then inner(self, "is_closed") end
  return rawget(self, "_c") == nil
end
function Listener:close()
  if getmetatable(self) ~= Listener_mt then inner(self, "close") end
  close_inner(self, "_c")
end
Listener_mt.__gc = function(self) close_inner(self, "_c") end
Listener_mt.__close = Listener_mt.__gc
Listener_mt.__tostring = function(self)
  return format("mpconn.cqueues.Listener (%s%s)", rawget(self, "_c") and "" or "closed, ", self.address)
end

---------------------------------------------------------------------------
-- Module functions
---------------------------------------------------------------------------

local function nb_opts(opts)
  local o = {}
  if opts ~= nil then
    if type(opts) ~= "table" then return opts end -- mpconn raises
    for k, v in pairs(opts) do o[k] = v end
  end
  o.nonblocking = true
  return o
end

--- mpconn.listen(address [, opts]) -> listener | nil, message, code
function M.listen(address, opts)
  local l, e, code = mpconn.listen(address, nb_opts(opts))
  if not l then return l, e, code end
  opts = opts or {}
  return setmetatable({ _c = l, address = l.address, family = l.family,
    _io_timeout = opt_secs(opts.io_timeout),
    _hs_timeout = opt_secs(opts.handshake_timeout) or opt_secs(opts.timeout) }, Listener_mt)
end

--- mpconn.connect(address [, opts]) -> conn | nil, message, code: yields
-- until the connection and its handshake are made.
function M.connect(address, opts)
  local c, e, code = mpconn.connect(address, nb_opts(opts))
  if not c then return c, e, code end
  opts = opts or {}
  local t = opt_secs(opts.timeout)
  local ct, ht = opt_secs(opts.connect_timeout) or t, opt_secs(opts.handshake_timeout) or t
  local total = (ct and ht) and ct + ht or nil
  local self = wrap_conn(c, opt_secs(opts.io_timeout), nil)
  local saved = self._timeout
  self._timeout = total
  local r, e2, code2 = run(self, "flush", false)
  self._timeout = saved
  if not r then
    if code2 == "TIMEOUT" then
      self._stage = format("waiting for %s, %d bytes buffered", c:events(), c:buffered())
    end
    self:close()
    if code2 == "TIMEOUT" then
      return nil, format("connect to %s: timed out (%s)", address, self._stage or "?"), "TIMEOUT"
    end
    return nil, e2, code2
  end
  return self
end

--- mpconn.pipe([duplex [, opts]]) -> a, b | nil, message, code
function M.pipe(duplex, opts)
  local a, b = mpconn.pipe(duplex, nb_opts(opts))
  if not a then return a, b end
  local io = opts and opt_secs(opts.io_timeout)
  return wrap_conn(a, io), wrap_conn(b, io)
end

--- mpconn.wait(conns [, timeout]) -> list of the connections with a
-- message (or end of file) waiting, in the order given; waits (yields) up
-- to timeout seconds (nil: no limit); an empty list when the time ran out.
function M.wait(conns, timeout)
  if type(conns) ~= "table" or getmetatable(conns) == Conn_mt then
    error("bad argument #1 to 'wait' (table of connections expected)", 2)
  end
  local t = secs(timeout, 2, "wait")
  local deadline = t and monotime() + t
  local n = #conns
  while true do
    local ready = {}
    for k = 1, n do
      local c = conns[k]
      if getmetatable(c) ~= Conn_mt then error(format("bad argument #1 to 'wait' (entry %d is not an mpconn.cqueues connection)", k), 2) end
      local ic = rawget(c, "_c")
      if not ic then error(format("bad argument #1 to 'wait' (connection %d is closed)", k), 2) end
      if ic:pending() or ic:poll(0) then ready[#ready + 1] = c end
    end
    if #ready > 0 or (deadline and monotime() >= deadline) then return ready end
    local objs = {}
    for k = 1, n do
      conns[k]._events = "r"
      objs[k] = conns[k]
    end
    if deadline then
      local left = deadline - monotime()
      objs[n + 1] = left > 0 and left or 0 -- a number: cqueues' timeout
    end
    cq_poll(table.unpack(objs, 1, n + (deadline and 1 or 0)))
    for k = 1, n do conns[k]._events = nil end
  end
end

M.Connection = Conn
M.Listener = Listener

return M
