-- sluice's job store in Redis. Every store operation is one call of this script, so each is
-- atomic: no read-modify-write races between gateways. ARGV[1] names the operation, the rest
-- are its arguments. Keys are built here from ids (standalone Redis or Sentinel, not Cluster).
-- `CAN` (legal transitions) and `FINAL` are prepended by the Rust side from `JobStatus`, so
-- the rules stay in one place. Times come from the Redis server's clock, shared by every
-- gateway.
--
-- Replies are JSON texts (`cjson.encode`) that the Rust side decodes with serde into the
-- types of `redis_store/reply.rs`: `{"ok": VALUES}`, or why not: `"not_found"`,
-- `"not_held"`, `"full"`, `"retired"`, `{"bad": {"from": STATUS, "to": STATUS}}`. Numbers are
-- Lua numbers (cjson writes 14 significant digits: milliseconds since 1970 fit); stored JSON
-- (inputs, outputs, chunks) travels as the text it was stored as, so it is never re-encoded.
--
-- Keys (prefix `sl:`): `job:ID` (hash, fields below), `chunks:ID` (list of stream chunks),
-- `q:EP` / `ql:EP` (queued ids, normal / low priority), `run:EP` (zset: running ids by
-- execution deadline), `ttl` (zset: ids by TTL deadline), `stat:EP` (hash: arrived, completed,
-- failed, retried), `wk:EP` (zset: workers by last heard, ms), `held:W` (set: ids W holds),
-- `taken` (hash: jobs taken per worker), `stops:W` (list: ids W must stop), `retired:W`,
-- `fleet:EP` (the autoscaler's fleet view, JSON), `eps` (set of endpoints), `hooks` (ids
-- whose webhook is due), `lastsweep`, `resp:ID` (a stored response, JSON), and the pub/sub
-- channel `ev`.
--
-- Job hash fields, short because every job carries them: `ep` endpoint, `input` (JSON),
-- `s3` (JSON or ''), `hook` webhook URL or '', `xt` execution timeout ms, `ttl` ms, `low`
-- '1' for low priority, `keep` retention ms after the end, `status`, `sub` submitted at (ms),
-- `start` / `end` (ms), `out` output (JSON), `err` error text, `retries`, `dlv` stream chunks
-- already delivered (the `/stream` cursor), `worker` holder, `miss` when the holder's vouched
-- ping first left it out (ms).

local P = 'sl:'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function jkey(id) return P .. 'job:' .. id end
local function ckey(id) return P .. 'chunks:' .. id end
local function qkey(ep, low)
  if low == '1' then return P .. 'ql:' .. ep end
  return P .. 'q:' .. ep
end
-- Jobs that have not ended are removed by the sweep at their TTL (it also takes them out of
-- their queue); their Redis expiry, this much later, is only a safety net.
local GRACE = 60000
-- Every gateway subscribes to one channel and wakes its local waiters by these names.
local function event(name) redis.call('PUBLISH', P .. 'ev', name) end

-- Replies. cjson writes an empty table as `{}`; the Rust side reads that as an empty list.
local function ok(v) return cjson.encode({ ok = v or {} }) end
local function bad(from, to) return cjson.encode({ bad = { from = from, to = to } }) end
local NOT_FOUND, NOT_HELD, FULL, RETIRED = '"not_found"', '"not_held"', '"full"', '"retired"'
-- Redis answers a missing field with `false`; a reply leaves it out.
local function opt(x) if x == false then return nil end return x end

-- The status object of job key `k` (`reply::View`), nil if there is no such job.
local function view(k)
  local f = redis.call('HMGET', k, 'status', 'sub', 'start', 'end', 'out', 'err', 'retries', 'worker')
  if not f[1] then return nil end
  return { status = f[1], sub = tonumber(f[2]), start = tonumber(opt(f[3])), ['end'] = tonumber(opt(f[4])),
    out = opt(f[5]), err = opt(f[6]), retries = tonumber(f[7]) or 0, worker = opt(f[8]) }
end

local function stop_worker(w, id)
  redis.call('RPUSH', P .. 'stops:' .. w, id)
  -- A dead worker never collects its stops.
  redis.call('PEXPIRE', P .. 'stops:' .. w, 86400000)
  event('w:' .. w)
end

-- The job reached final state `to`: counts, webhook, and its expiry (the retention, never
-- past the TTL).
local function finish(id, to)
  local k = jkey(id)
  local f = redis.call('HMGET', k, 'ep', 'worker', 'hook', 'keep', 'sub', 'ttl')
  redis.call('HSET', k, 'status', to, 'end', now)
  redis.call('ZREM', P .. 'run:' .. f[1], id)
  redis.call('ZREM', P .. 'ttl', id)
  if f[2] then redis.call('SREM', P .. 'held:' .. f[2], id) end
  local left = tonumber(f[5]) + tonumber(f[6]) - now
  local keep = math.max(1, math.min(tonumber(f[4]), left))
  redis.call('PEXPIRE', k, keep)
  redis.call('PEXPIRE', ckey(id), keep)
  if to == 'COMPLETED' then
    redis.call('HINCRBY', P .. 'stat:' .. f[1], 'completed', 1)
  elseif to == 'FAILED' or to == 'TIMED_OUT' then
    redis.call('HINCRBY', P .. 'stat:' .. f[1], 'failed', 1)
  end
  if f[3] ~= '' and to ~= 'CANCELLED' then
    redis.call('RPUSH', P .. 'hooks', id)
    event('h')
  end
  event('j:' .. id)
end

-- Back to the queue (a lost worker: to the front, it has waited longest; `retry`: to the back).
local function requeue(id, front)
  local k = jkey(id)
  local f = redis.call('HMGET', k, 'ep', 'low', 'sub', 'ttl', 'worker')
  redis.call('HSET', k, 'status', 'IN_QUEUE', 'dlv', 0)
  redis.call('HDEL', k, 'start', 'end', 'worker', 'out', 'err', 'miss')
  redis.call('HINCRBY', k, 'retries', 1)
  redis.call('DEL', ckey(id))
  redis.call('ZREM', P .. 'run:' .. f[1], id)
  if f[5] then redis.call('SREM', P .. 'held:' .. f[5], id) end
  local deadline = tonumber(f[3]) + tonumber(f[4])
  redis.call('PEXPIRE', k, math.max(1, deadline - now) + GRACE)
  redis.call('ZADD', P .. 'ttl', deadline, id)
  if front then
    redis.call('LPUSH', qkey(f[1], f[2]), id)
  else
    redis.call('RPUSH', qkey(f[1], f[2]), id)
  end
  redis.call('HINCRBY', P .. 'stat:' .. f[1], 'retried', 1)
  event('q:' .. f[1])
  event('j:' .. id)
end

-- The job's status if `w` holds it, else the error reply.
local function held(id, w)
  local f = redis.call('HMGET', jkey(id), 'status', 'worker')
  if not f[1] then return nil, NOT_FOUND end
  if f[2] ~= w then return nil, NOT_HELD end
  return f[1]
end

-- Job `id`, held by `w`, lost its worker: back to the front of its queue, or FAILED after
-- `max_retries`. Returns 1 if it was changed.
local function lose_job(id, w, max_retries)
  local f = redis.call('HMGET', jkey(id), 'status', 'worker', 'retries')
  if f[1] ~= 'IN_PROGRESS' or f[2] ~= w then return 0 end
  local retries = tonumber(f[3])
  if retries >= max_retries then
    redis.call('HSET', jkey(id), 'err', string.format(
      'worker lost %d times; giving up after %d retries', retries + 1, max_retries))
    finish(id, 'FAILED')
  else
    requeue(id, true)
  end
  return 1
end

-- Worker `w` is gone: every job it holds is lost. Returns how many.
local function lose_worker(w, max_retries)
  local n = 0
  local ids = redis.call('SMEMBERS', P .. 'held:' .. w)
  for i = 1, #ids do n = n + lose_job(ids[i], w, max_retries) end
  redis.call('DEL', P .. 'held:' .. w)
  return n
end

-- Workers of `ep` heard from within `timeout` ms, retired ones (`stopPod`) excepted.
local function live_workers(ep, timeout)
  local out = {}
  local ids = redis.call('ZRANGEBYSCORE', P .. 'wk:' .. ep, now - tonumber(timeout), '+inf')
  for i = 1, #ids do
    if redis.call('EXISTS', P .. 'retired:' .. ids[i]) == 0 then out[#out + 1] = ids[i] end
  end
  return out
end

local ops = {}

function ops.submit(ep, id, input, s3, hook, xt, ttl, low, keep, maxq, tp)
  if redis.call('LLEN', qkey(ep, '0')) + redis.call('LLEN', qkey(ep, '1')) >= tonumber(maxq) then
    return FULL
  end
  local k = jkey(id)
  redis.call('HSET', k, 'ep', ep, 'input', input, 's3', s3, 'hook', hook, 'xt', xt, 'ttl', ttl,
    'low', low, 'keep', keep, 'status', 'IN_QUEUE', 'sub', now, 'retries', 0, 'dlv', 0, 'tp', tp)
  redis.call('PEXPIRE', k, tonumber(ttl) + GRACE)
  redis.call('ZADD', P .. 'ttl', now + tonumber(ttl), id)
  redis.call('RPUSH', qkey(ep, low), id)
  redis.call('SADD', P .. 'eps', ep)
  redis.call('HINCRBY', P .. 'stat:' .. ep, 'arrived', 1)
  event('q:' .. ep)
  return ok()
end

-- `touch` is set on a long-poll's first look only: a poll a gateway keeps open for a worker
-- that died meanwhile must not keep it looking alive.
function ops.take(ep, w, max, touch)
  if redis.call('EXISTS', P .. 'retired:' .. w) == 1 then return RETIRED end
  if touch == '1' then redis.call('ZADD', P .. 'wk:' .. ep, now, w) end
  local out = {}
  local n = 0
  while n < tonumber(max) do
    local id = redis.call('LPOP', qkey(ep, '0')) or redis.call('LPOP', qkey(ep, '1'))
    if not id then break end
    local k = jkey(id)
    local f = redis.call('HMGET', k, 'status', 'xt', 'input', 's3', 'tp')
    if f[1] and CAN[f[1] .. '>IN_PROGRESS'] then
      redis.call('HSET', k, 'status', 'IN_PROGRESS', 'start', now, 'worker', w)
      redis.call('ZADD', P .. 'run:' .. ep, now + tonumber(f[2]), id)
      redis.call('SADD', P .. 'held:' .. w, id)
      out[#out + 1] = { id = id, input = f[3], s3 = f[4], tp = f[5] or '' }
      n = n + 1
      event('j:' .. id)
    end
  end
  -- Jobs handed out start a lease, even to a worker the sweep already gave up on.
  if n > 0 then
    redis.call('ZADD', P .. 'wk:' .. ep, now, w)
    redis.call('HINCRBY', P .. 'taken', w, n)
  end
  return ok(out)
end

function ops.push(id, w, ...)
  local st, err = held(id, w)
  if not st then return err end
  if st == 'IN_PROGRESS' and select('#', ...) > 0 then
    redis.call('RPUSH', ckey(id), ...)
    event('j:' .. id)
  end
  return ok()
end

function ops.report(id, w, kind, payload)
  local st, err = held(id, w)
  if not st then return err end
  -- A retried report, or one on a job cancelled or timed out meanwhile: the first final
  -- state stands.
  if FINAL[st] then return ok() end
  local k = jkey(id)
  if kind == 'progress' then
    redis.call('HSET', k, 'out', payload)
    event('j:' .. id)
    return ok()
  end
  local to, field = 'COMPLETED', 'out'
  if kind == 'failed' then to, field = 'FAILED', 'err' end
  if not CAN[st .. '>' .. to] then return bad(st, to) end
  redis.call('HSET', k, field, payload)
  finish(id, to)
  return ok()
end

function ops.get(id)
  local v = view(jkey(id))
  if not v then return NOT_FOUND end
  return ok({ now = now, view = v })
end

-- Chunks from `cursor` on; with `advance`, from the job's delivery cursor, which moves past them.
local function read(id, cursor, advance)
  local k = jkey(id)
  local f = redis.call('HMGET', k, 'status', 'dlv')
  if not f[1] then return NOT_FOUND end
  if advance then cursor = tonumber(f[2]) end
  local len = redis.call('LLEN', ckey(id))
  local chunks = {}
  if cursor < len then
    chunks = redis.call('LRANGE', ckey(id), cursor, -1)
    if advance then redis.call('HSET', k, 'dlv', len) end
  end
  return ok({ status = f[1], len = len, chunks = chunks })
end

function ops.read(id, cursor) return read(id, tonumber(cursor), false) end

function ops.take_stream(id) return read(id, 0, true) end

function ops.cancel(id)
  local k = jkey(id)
  local f = redis.call('HMGET', k, 'status', 'ep', 'low', 'worker')
  local st = f[1]
  if not st then return NOT_FOUND end
  if FINAL[st] then return ok({ status = st }) end
  if not CAN[st .. '>CANCELLED'] then return bad(st, 'CANCELLED') end
  if st == 'IN_PROGRESS' then
    stop_worker(f[4], id)
  else
    redis.call('LREM', qkey(f[2], f[3]), 0, id)
  end
  finish(id, 'CANCELLED')
  return ok({ status = 'CANCELLED' })
end

function ops.stops(w)
  local key = P .. 'stops:' .. w
  local ids = redis.call('LRANGE', key, 0, -1)
  redis.call('DEL', key)
  return ok(ids)
end

-- With `vouched` = '1', `...` are all the jobs the worker runs: one it holds but leaves out
-- (noted in `miss`) for `orphan` ms was handed out by a take whose answer never reached it.
function ops.ping(ep, w, orphan, max_retries, vouched, ...)
  -- Renews a retired worker's lease too (`live_workers` leaves it out of the live count).
  redis.call('ZADD', P .. 'wk:' .. ep, now, w)
  if vouched ~= '1' then return ok() end
  local listed = {}
  for i = 1, select('#', ...) do listed[select(i, ...)] = true end
  local ids = redis.call('SMEMBERS', P .. 'held:' .. w)
  for i = 1, #ids do
    local k = jkey(ids[i])
    if listed[ids[i]] then
      redis.call('HDEL', k, 'miss')
    else
      local miss = redis.call('HGET', k, 'miss')
      if not miss then
        if redis.call('HGET', k, 'status') == 'IN_PROGRESS' then redis.call('HSET', k, 'miss', now) end
      elseif now - tonumber(miss) > tonumber(orphan) then
        lose_job(ids[i], w, tonumber(max_retries))
      end
    end
  end
  return ok()
end

function ops.metrics(ep, timeout)
  local oldest = 0
  local head = redis.call('LINDEX', qkey(ep, '0'), 0)
  if head then
    local sub = redis.call('HGET', jkey(head), 'sub')
    if sub then oldest = math.max(0, now - tonumber(sub)) end
  end
  local live = live_workers(ep, timeout)
  local running = 0
  for i = 1, #live do
    if redis.call('SCARD', P .. 'held:' .. live[i]) > 0 then running = running + 1 end
  end
  local s = redis.call('HMGET', P .. 'stat:' .. ep, 'arrived', 'completed', 'failed', 'retried')
  return ok({ in_queue = redis.call('LLEN', qkey(ep, '0')), in_queue_low_priority = redis.call('LLEN', qkey(ep, '1')),
    in_progress = redis.call('ZCARD', P .. 'run:' .. ep), oldest_queued_ms = oldest,
    arrived = tonumber(s[1]) or 0, completed = tonumber(s[2]) or 0, failed = tonumber(s[3]) or 0,
    retried = tonumber(s[4]) or 0, workers_live = #live, workers_running = running })
end

function ops.workers(ep, timeout)
  local live = live_workers(ep, timeout)
  local out = {}
  for i = 1, #live do
    out[i] = { id = live[i], jobs = redis.call('SCARD', P .. 'held:' .. live[i]),
      taken = tonumber(redis.call('HGET', P .. 'taken', live[i])) or 0 }
  end
  return ok(out)
end

function ops.lost(w, max_retries)
  local eps = redis.call('SMEMBERS', P .. 'eps')
  for i = 1, #eps do redis.call('ZREM', P .. 'wk:' .. eps[i], w) end
  -- Its process is gone: nothing more to remember.
  redis.call('DEL', P .. 'retired:' .. w)
  redis.call('HDEL', P .. 'taken', w)
  return ok({ n = lose_worker(w, tonumber(max_retries)) })
end

function ops.put_fleet(ep, fleet, ttl)
  redis.call('SET', P .. 'fleet:' .. ep, fleet, 'PX', ttl)
  return ok()
end

function ops.fleet(ep)
  return ok({ fleet = opt(redis.call('GET', P .. 'fleet:' .. ep)) })
end

-- Fitness-check failures workers reported on their way out (`fit:EP`): the newest `keep`, as
-- JSON texts, newest first, kept for `ttl` ms after the newest.
function ops.put_fitness(ep, failure, keep, ttl)
  local k = P .. 'fit:' .. ep
  redis.call('LPUSH', k, failure)
  redis.call('LTRIM', k, 0, tonumber(keep) - 1)
  redis.call('PEXPIRE', k, ttl)
  return ok()
end

function ops.fitness(ep)
  return ok(redis.call('LRANGE', P .. 'fit:' .. ep, 0, -1))
end

function ops.retry(id)
  local st = redis.call('HGET', jkey(id), 'status')
  if not st then return NOT_FOUND end
  if not (st == 'FAILED' or st == 'TIMED_OUT') or not CAN[st .. '>IN_QUEUE'] then
    return bad(st, 'IN_QUEUE')
  end
  requeue(id, false)
  return ok()
end

-- Queued jobs of `ep`, only those of `tenant` unless it is '' (the tag after an optional
-- `sync-`, as `job_tenant` reads it).
function ops.purge(ep, tenant)
  local n = 0
  for _, low in ipairs({ '0', '1' }) do
    local q = qkey(ep, low)
    local ids = redis.call('LRANGE', q, 0, -1)
    for i = 1, #ids do
      local id = ids[i]
      local rest = id:gsub('^sync%-', '')
      if tenant == '' or rest:sub(1, #tenant + 1) == tenant .. '-' then
        redis.call('LREM', q, 0, id)
        redis.call('DEL', jkey(id), ckey(id))
        redis.call('ZREM', P .. 'ttl', id)
        event('j:' .. id)
        n = n + 1
      end
    end
  end
  return ok({ n = n })
end

-- Still leased its jobs (the sweep reclaims them if it dies) and told its stops; no longer
-- live, and given no new jobs.
-- Answers how many jobs it holds at that instant: with none, none can reach it until
-- `reinstate` (the autoscaler freezes such a worker: parking).
function ops.retire(w)
  redis.call('SET', P .. 'retired:' .. w, 1, 'PX', 86400000)
  return ok({ n = redis.call('SCARD', P .. 'held:' .. w) })
end

-- Undo `retire` (a parked worker thawed); its open `take` polls look again at once.
function ops.reinstate(ep, w)
  redis.call('DEL', P .. 'retired:' .. w)
  event('q:' .. ep)
  return ok()
end

function ops.is_retired(w)
  return ok({ retired = redis.call('EXISTS', P .. 'retired:' .. w) == 1 })
end

-- Up to `max` finished jobs with a webhook, each handed to one gateway only.
function ops.hooks(max)
  local due = {}
  for _ = 1, tonumber(max) do
    local id = redis.call('LPOP', P .. 'hooks')
    if not id then break end
    local k = jkey(id)
    local hook = redis.call('HGET', k, 'hook')
    local v = view(k)
    if hook and v then due[#due + 1] = { id = id, hook = hook, view = v } end
  end
  return ok({ now = now, due = due })
end

-- Housekeeping, run by every gateway once a second (atomic, so concurrent runs are safe):
-- silent workers lose their leases, execution timeouts, TTLs.
function ops.sweep(timeout, max_retries)
  local n = 0
  local cutoff = now - tonumber(timeout)
  max_retries = tonumber(max_retries)
  local eps = redis.call('SMEMBERS', P .. 'eps')
  -- No sweep for a while means Redis (or every gateway: only gateways sweep) was away:
  -- workers could not ping meanwhile, so they get a fresh lease instead of losing their jobs.
  local last = tonumber(redis.call('GET', P .. 'lastsweep') or '0')
  redis.call('SET', P .. 'lastsweep', now)
  -- (Sweeps run every second: a gap of 3 s means at least two were missed.)
  local resumed = now - last > math.max(tonumber(timeout) / 2, 3000)
  for e = 1, #eps do
    local ep = eps[e]
    local wk = P .. 'wk:' .. ep
    if resumed then
      local all = redis.call('ZRANGE', wk, 0, -1)
      for i = 1, #all do redis.call('ZADD', wk, now, all[i]) end
    end
    local dead = redis.call('ZRANGEBYSCORE', wk, '-inf', '(' .. cutoff)
    redis.call('ZREMRANGEBYSCORE', wk, '-inf', '(' .. cutoff)
    for d = 1, #dead do
      n = n + lose_worker(dead[d], max_retries)
      redis.call('HDEL', P .. 'taken', dead[d])
    end
    local late = redis.call('ZRANGEBYSCORE', P .. 'run:' .. ep, '-inf', now)
    for i = 1, #late do
      local id = late[i]
      local f = redis.call('HMGET', jkey(id), 'status', 'worker')
      if f[1] == 'IN_PROGRESS' then
        redis.call('HSET', jkey(id), 'err', 'execution timeout exceeded')
        stop_worker(f[2], id)
        finish(id, 'TIMED_OUT')
        n = n + 1
      else
        redis.call('ZREM', P .. 'run:' .. ep, id)
      end
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', P .. 'ttl', '-inf', now)
  for i = 1, #expired do
    local id = expired[i]
    local f = redis.call('HMGET', jkey(id), 'ep', 'low', 'worker', 'status')
    if f[1] then
      redis.call('LREM', qkey(f[1], f[2]), 0, id)
      redis.call('ZREM', P .. 'run:' .. f[1], id)
    end
    if f[3] then
      redis.call('SREM', P .. 'held:' .. f[3], id)
      -- Past its TTL the job is gone: a worker still running it stops.
      if f[4] == 'IN_PROGRESS' then stop_worker(f[3], id) end
    end
    redis.call('DEL', jkey(id), ckey(id))
    event('j:' .. id)
    n = n + 1
  end
  redis.call('ZREMRANGEBYSCORE', P .. 'ttl', '-inf', now)
  return ok({ n = n })
end

-- Token buckets (`crate::bucket_step`, the same arithmetic), four arguments each: key,
-- `capacity` tokens refilled at `capacity` per minute, `cost`, `need`. Each cost is taken only
-- when every bucket holds its need (a bucket may go below 0); else nothing changes.
function ops.rate(...)
  local args, buckets, enough = { ... }, {}, true
  for i = 1, #args, 4 do
    local capacity = tonumber(args[i + 1])
    local k = P .. 'rate:' .. args[i]
    local s = redis.call('HMGET', k, 'tokens', 'at')
    local tokens, at = tonumber(s[1]) or capacity, tonumber(s[2]) or now
    local per_ms = capacity / 60000
    local b = { k = k, capacity = capacity, cost = tonumber(args[i + 2]), need = tonumber(args[i + 3]),
      per_ms = per_ms, tokens = math.min(capacity, tokens + math.max(0, now - at) * per_ms) }
    if b.tokens < b.need then enough = false end
    buckets[#buckets + 1] = b
  end
  local takes = {}
  for _, b in ipairs(buckets) do
    local tokens = b.tokens
    if enough then
      tokens = tokens - b.cost
      redis.call('HSET', b.k, 'tokens', tostring(tokens), 'at', now)
    end
    local reset = math.ceil(math.max(0, b.capacity - tokens) / b.per_ms)
    -- Once full again the bucket is the same as none.
    if enough then redis.call('PEXPIRE', b.k, reset + 1000) end
    local allowed = b.tokens >= b.need
    local retry = 0
    if not allowed then retry = math.ceil((b.need - tokens) / b.per_ms) end
    takes[#takes + 1] = { allowed = allowed, remaining = math.max(0, math.floor(tokens)), reset_ms = reset, retry_ms = retry }
  end
  return ok({ takes = takes })
end

-- Stored responses of the Responses API: `resp:ID`, the record's JSON text, expiring with its
-- retention (Redis drops it; no sweep needed).
function ops.put_response(id, record, ttl)
  redis.call('SET', P .. 'resp:' .. id, record, 'PX', ttl)
  return ok({})
end

function ops.response(id)
  local r = redis.call('GET', P .. 'resp:' .. id)
  if not r then return ok({}) end
  return ok({ r = r })
end

function ops.delete_response(id)
  return ok({ n = redis.call('DEL', P .. 'resp:' .. id) })
end

local op = ops[ARGV[1]]
if not op then return redis.error_reply('sluice: unknown store operation ' .. tostring(ARGV[1])) end
return op(unpack(ARGV, 2))
