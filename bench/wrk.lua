-- wrk script for bench/run.sh: builds the request of one scenario and checks every answer.
--
-- Configured through the environment (set by run.sh):
--   BENCH_MODE         bare | floor | me | login
--   BENCH_TOKEN        the access token for `me` (sent as "Authorization: JWT <token>")
--   BENCH_RUN          a run id, so login codes are unique across runs as well as requests
--   BENCH_LOGIN_USERS  0: every login code is a new WeChat user (a first login, the default);
--                      N > 0: the codes belong to N users, who log in again and again
--
-- floor is `{ __typename }`: the GraphQL endpoint with no resolver and no database, i.e. what
-- graphene and the view cost before any field of ours runs.
--
-- A request counts as good only when the status is 200, the body has no "errors" key and it
-- carries the field the scenario expects. done() prints one machine-readable BENCH_RESULT line.

local mode = os.getenv("BENCH_MODE") or "bare"
local run_id = os.getenv("BENCH_RUN") or "r"
local login_users = tonumber(os.getenv("BENCH_LOGIN_USERS") or "0") or 0

local ME_QUERY = '{"query":"{ me { id openid nickname } }"}'
local FLOOR_QUERY = '{"query":"{ __typename }"}'
local LOGIN_PREFIX = '{"query":"mutation Login($code: String!) { wechatLogin(code: $code) '
  .. '{ token refreshToken created user { id } } }","variables":{"code":"'
local LOGIN_SUFFIX = '"}}'

-- What a good body must contain, per scenario.
local expect = ({
  bare = '"ok": true',
  floor = '"__typename":"Query"',
  me = '"me":{"id":',
  login = '"token":"',
})[mode]

local threads = {}
local counter = 0

-- setup() runs in the main Lua state, once per thread, before the threads start.
function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
  table.insert(threads, thread)
end

-- Everything below runs in each thread's own Lua state (globals are per thread).
function init(args)
  n = 0
  good, non200, gql_errors, unexpected = 0, 0, 0, 0
  first_bad = ""
  if mode == "bare" then
    fixed = wrk.format("GET", "/bench/bare", { ["Accept"] = "application/json" })
  elseif mode == "floor" then
    fixed = wrk.format("POST", "/graphql/", { ["Content-Type"] = "application/json" }, FLOOR_QUERY)
  elseif mode == "me" then
    local token = os.getenv("BENCH_TOKEN")
    if not token or token == "" then
      error("BENCH_TOKEN is not set")
    end
    fixed = wrk.format("POST", "/graphql/", {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "JWT " .. token,
    }, ME_QUERY)
  elseif mode == "login" then
    fixed = nil
    login_headers = { ["Content-Type"] = "application/json" }
  else
    error("unknown BENCH_MODE " .. mode)
  end
end

function request()
  if fixed then
    return fixed
  end
  -- A fresh sandbox code for every request: b<run>-<thread>-<n>. The sandbox takes the part
  -- before any ':' as the WeChat user, so each such code is also a new user (a first login);
  -- with BENCH_LOGIN_USERS=N the code is u<k>:b<run>-<thread>-<n>, a new code of user k < N.
  n = n + 1
  local code = "b" .. run_id .. "-" .. thread_id .. "-" .. n
  if login_users > 0 then
    code = "u" .. ((n * 7919 + thread_id) % login_users) .. ":" .. code
  end
  return wrk.format("POST", "/graphql/", login_headers, LOGIN_PREFIX .. code .. LOGIN_SUFFIX)
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_bad == "" then first_bad = "HTTP " .. status .. ": " .. string.sub(body or "", 1, 200) end
  elseif body:find('"errors"', 1, true) then
    gql_errors = gql_errors + 1
    if first_bad == "" then first_bad = string.sub(body, 1, 200) end
  elseif not body:find(expect, 1, true) then
    unexpected = unexpected + 1
    if first_bad == "" then first_bad = string.sub(body, 1, 200) end
  else
    good = good + 1
  end
end

function done(summary, latency, requests)
  local g, s, e, u, bad = 0, 0, 0, 0, ""
  for _, t in ipairs(threads) do
    g = g + (t:get("good") or 0)
    s = s + (t:get("non200") or 0)
    e = e + (t:get("gql_errors") or 0)
    u = u + (t:get("unexpected") or 0)
    if bad == "" then bad = t:get("first_bad") or "" end
  end
  local secs = summary.duration / 1e6
  local err = summary.errors
  io.write(string.format(
    "BENCH_RESULT mode=%s requests=%d seconds=%.3f rps=%.2f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f "
      .. "good=%d non200=%d gql_errors=%d unexpected=%d sock_connect=%d sock_read=%d sock_write=%d sock_timeout=%d\n",
    mode, summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    g, s, e, u, err.connect, err.read, err.write, err.timeout))
  if bad ~= "" then
    io.write("BENCH_FIRST_BAD " .. bad:gsub("\n", " ") .. "\n")
  end
end
