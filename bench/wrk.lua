-- wrk script for bench/run.sh: builds the request of one scenario and checks every answer.
--
-- Configured through the environment (set by run.sh):
--   BENCH_MODE         bare | floor | me | login | notify_v2 | notify_v3 | notify_alipay | orders | oa_text
--   BENCH_TOKEN        the access token for `me` and `orders` (sent as "Authorization: JWT <token>")
--   BENCH_RUN          a run id, so login codes are unique across runs as well as requests
--   BENCH_LOGIN_USERS  0: every login code is a new WeChat user (a first login, the default);
--                      N > 0: the codes belong to N users, who log in again and again
--   BENCH_DATA         notify_*, oa_text: the file of requests of this phase, one a line, written by
--                      bench/fixtures.py, tab-separated: out_trade_no and the XML body (v2), or
--                      out_trade_no, timestamp, nonce, signature, serial and the JSON body (v3), or
--                      out_trade_no and the URL-encoded form body (Alipay), or the MsgId, the path with
--                      its signed query and the safe-mode XML envelope (oa_text).
--                      Each is sent once: thread t of n takes the lines t, t+n, t+2n, ...; a thread
--                      that runs out stops and counts it as `exhausted` (a failed run), never
--                      reusing a notify or a message.
--   BENCH_IDS          notify_*, oa_text: done() writes here which requests were answered well
--                      ("ok <out_trade_no or MsgId>"), badly ("bad ...") or not at all ("inflight ...":
--                      sent, no answer read when wrk stopped). Each request carries its out_trade_no
--                      (MsgId) as X-Request-ID, which the server's RequestIdMiddleware echoes.
--   BENCH_THREADS      wrk's -t, to split BENCH_DATA between the threads
--
-- floor is `{ __typename }`: the GraphQL endpoint with no resolver and no database, i.e. what
-- graphene and the view cost before any field of ours runs.
--
-- A request counts as good only when the status is the expected one (200; 204 for notify_v3), a
-- GraphQL body has no "errors" key and the body carries what the scenario expects (orders: exactly
-- 50 nodes; notify_alipay: exactly "success", as Alipay reads it; oa_text: an encrypted passive reply,
-- `<Encrypt>`, never a bare "success"). done() prints one machine-readable BENCH_RESULT line; `issued` is the number of
-- requests built (sent), so issued - requests were in flight when wrk stopped.

local mode = os.getenv("BENCH_MODE") or "bare"
local run_id = os.getenv("BENCH_RUN") or "r"
local login_users = tonumber(os.getenv("BENCH_LOGIN_USERS") or "0") or 0
local data_file = os.getenv("BENCH_DATA") or ""
local ids_file = os.getenv("BENCH_IDS") or ""
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1") or 1

local ME_QUERY = '{"query":"{ me { id openid nickname } }"}'
local FLOOR_QUERY = '{"query":"{ __typename }"}'
local ORDERS_QUERY = '{"query":"{ orders(first: 50) { edges { node { outTradeNo status amount product { sku } } } } }"}'
local LOGIN_PREFIX = '{"query":"mutation Login($code: String!) { wechatLogin(code: $code) '
  .. '{ token refreshToken created user { id } } }","variables":{"code":"'
local LOGIN_SUFFIX = '"}}'

-- What a good body must contain, per scenario (notify_v3: an empty 204).
local expect = ({
  bare = '"ok": true',
  floor = '"__typename":"Query"',
  me = '"me":{"id":',
  login = '"token":"',
  notify_v2 = '<return_code><![CDATA[SUCCESS]]></return_code>',
  orders = '"orders":{"edges":[',
  oa_text = '<Encrypt>',
})[mode]
local expect_status = (mode == "notify_v3") and 204 or 200
local graphql = ({ floor = true, me = true, login = true, orders = true })[mode] or false
local notify_mode = ({ notify_v2 = true, notify_v3 = true, notify_alipay = true })[mode] or false
-- Scenarios whose requests are read from BENCH_DATA, each sent once and tracked by X-Request-ID.
local data_mode = notify_mode or mode == "oa_text"
local DATA_FIELDS = { notify_v3 = 6, oa_text = 3 }

local threads = {}
local counter = 0

-- setup() runs in the main Lua state, once per thread, before the threads start.
function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
  table.insert(threads, thread)
end

local function split_tabs(line, fields)
  local parts, start = {}, 1
  for _ = 1, fields - 1 do
    local tab = string.find(line, "\t", start, true)
    if not tab then error("BENCH_DATA: a line needs " .. fields .. " tab-separated fields") end
    table.insert(parts, string.sub(line, start, tab - 1))
    start = tab + 1
  end
  table.insert(parts, string.sub(line, start))
  return parts
end

-- This thread's share of the notifies (messages): lines thread_id, thread_id + nthreads, ...
local function load_notifies()
  if data_file == "" then error("BENCH_DATA is not set") end
  local fh = io.open(data_file, "rb")
  if not fh then error("cannot read BENCH_DATA " .. data_file) end
  local items, i = {}, 0
  for line in fh:lines() do
    i = i + 1
    if line ~= "" and (i - 1) % nthreads == thread_id - 1 then
      table.insert(items, split_tabs(line, DATA_FIELDS[mode] or 2))
    end
  end
  fh:close()
  return items
end

-- Everything below runs in each thread's own Lua state (globals are per thread).
function init(args)
  n = 0
  issued, exhausted, script_checks = 0, 0, 0
  good, bad_status, gql_errors, unexpected = 0, 0, 0, 0
  first_bad = ""
  fixed, notifies = nil, nil
  ok_ids, bad_ids, pending = {}, {}, {}
  if mode == "bare" then
    fixed = wrk.format("GET", "/bench/bare", { ["Accept"] = "application/json" })
  elseif mode == "floor" then
    fixed = wrk.format("POST", "/graphql/", { ["Content-Type"] = "application/json" }, FLOOR_QUERY)
  elseif mode == "me" or mode == "orders" then
    local token = os.getenv("BENCH_TOKEN")
    if not token or token == "" then
      error("BENCH_TOKEN is not set")
    end
    fixed = wrk.format("POST", "/graphql/", {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "JWT " .. token,
    }, mode == "me" and ME_QUERY or ORDERS_QUERY)
  elseif mode == "login" then
    login_headers = { ["Content-Type"] = "application/json" }
  elseif data_mode then
    notifies = load_notifies()
    checked = thread_id ~= 1
    script_check = wrk.format("GET", "/bench/bare", { ["X-Request-ID"] = "wrk-script-check" })
    -- Sent when a thread has run out, only so request() returns something; the thread stops.
    spent = wrk.format("GET", "/bench/bare", { ["Accept"] = "application/json" })
  else
    error("unknown BENCH_MODE " .. mode)
  end
end

local function note_bad(text)
  if first_bad == "" then first_bad = string.sub(text, 1, 200) end
end

function request()
  if fixed then
    issued = issued + 1
    return fixed
  end
  if notifies and not checked then
    -- wrk (4.x) calls request() once in the first thread before the run, only to check what it
    -- returns, and never sends that; so that call gets a harmless request, not a notify.
    checked = true
    return script_check
  end
  n = n + 1
  if notifies then
    local item = notifies[n]
    if item == nil then
      -- Out of fresh notifies: never resend one. The run is marked failed (exhausted > 0).
      exhausted = exhausted + 1
      note_bad("ran out of fresh requests after " .. issued
        .. ": raise BENCH_NOTIFY_RATE_V2 / _V3 / _ALIPAY or BENCH_OA_RATE")
      wrk.thread:stop()
      return spent
    end
    issued = issued + 1
    pending[item[1]] = true
    if mode == "notify_v2" then
      return wrk.format("POST", "/notify/wechatpay/v2/", {
        ["Content-Type"] = "text/xml",
        ["X-Request-ID"] = item[1],
      }, item[2])
    end
    if mode == "oa_text" then
      -- WeChat posts text/xml; the query (signature, msg_signature, ...) is part of the path.
      return wrk.format("POST", item[2], {
        ["Content-Type"] = "text/xml",
        ["X-Request-ID"] = item[1],
      }, item[3])
    end
    if mode == "notify_alipay" then
      return wrk.format("POST", "/notify/alipay/", {
        ["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8",
        ["X-Request-ID"] = item[1],
      }, item[2])
    end
    return wrk.format("POST", "/notify/wechatpay/v3/", {
      ["Content-Type"] = "application/json",
      ["X-Request-ID"] = item[1],
      ["Wechatpay-Timestamp"] = item[2],
      ["Wechatpay-Nonce"] = item[3],
      ["Wechatpay-Signature"] = item[4],
      ["Wechatpay-Serial"] = item[5],
    }, item[6])
  end
  -- A fresh sandbox code for every request: b<run>-<thread>-<n>. The sandbox takes the part
  -- before any ':' as the WeChat user, so each such code is also a new user (a first login);
  -- with BENCH_LOGIN_USERS=N the code is u<k>:b<run>-<thread>-<n>, a new code of user k < N.
  issued = issued + 1
  local code = "b" .. run_id .. "-" .. thread_id .. "-" .. n
  if login_users > 0 then
    code = "u" .. ((n * 7919 + thread_id) % login_users) .. ":" .. code
  end
  return wrk.format("POST", "/graphql/", login_headers, LOGIN_PREFIX .. code .. LOGIN_SUFFIX)
end

local function count_nodes(body)
  local count, start = 0, 1
  while true do
    local at = string.find(body, '{"node":{', start, true)
    if not at then return count end
    count = count + 1
    start = at + 9
  end
end

function response(status, headers, body)
  body = body or ""
  local id = notifies and (headers["X-Request-ID"] or headers["x-request-id"] or "?")
  if id == "wrk-script-check" then
    -- Only if a wrk version did send its check request: not a notify, so neither good nor bad.
    script_checks = script_checks + 1
    return
  end
  if id then pending[id] = nil end
  if status ~= expect_status then
    bad_status = bad_status + 1
    note_bad("HTTP " .. status .. ": " .. body)
  elseif graphql and body:find('"errors"', 1, true) then
    gql_errors = gql_errors + 1
    note_bad(body)
  elseif (expect and not body:find(expect, 1, true)) or (mode == "notify_v3" and body ~= "")
    or (mode == "notify_alipay" and body ~= "success") or (mode == "orders" and count_nodes(body) ~= 50) then
    unexpected = unexpected + 1
    note_bad(body)
  else
    good = good + 1
    if id then table.insert(ok_ids, id) end
    return
  end
  if id then table.insert(bad_ids, id) end
end

function done(summary, latency, requests)
  local g, s, e, u, iss, ex, sc, bad = 0, 0, 0, 0, 0, 0, 0, ""
  for _, t in ipairs(threads) do
    g = g + (t:get("good") or 0)
    iss = iss + (t:get("issued") or 0)
    ex = ex + (t:get("exhausted") or 0)
    sc = sc + (t:get("script_checks") or 0)
    s = s + (t:get("bad_status") or 0)
    e = e + (t:get("gql_errors") or 0)
    u = u + (t:get("unexpected") or 0)
    if bad == "" then bad = t:get("first_bad") or "" end
  end
  local secs = summary.duration / 1e6
  local err = summary.errors
  io.write(string.format(
    "BENCH_RESULT mode=%s requests=%d seconds=%.3f rps=%.2f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f "
      .. "good=%d bad_status=%d gql_errors=%d unexpected=%d exhausted=%d issued=%d script_checks=%d "
      .. "sock_connect=%d sock_read=%d sock_write=%d sock_timeout=%d\n",
    mode, summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    g, s, e, u, ex, iss, sc, err.connect, err.read, err.write, err.timeout))
  if bad ~= "" then
    io.write("BENCH_FIRST_BAD " .. bad:gsub("\n", " ") .. "\n")
  end
  if ids_file ~= "" and data_mode then
    local fh = assert(io.open(ids_file, "w"))
    for _, t in ipairs(threads) do
      for _, id in ipairs(t:get("ok_ids") or {}) do fh:write("ok ", id, "\n") end
      for _, id in ipairs(t:get("bad_ids") or {}) do fh:write("bad ", id, "\n") end
      for id, _ in pairs(t:get("pending") or {}) do fh:write("inflight ", id, "\n") end
    end
    fh:close()
  end
end
