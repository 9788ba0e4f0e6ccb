"""The Lua scripts that change a job's state: each runs atomically inside Redis.

Why Lua: a state change touches several keys (the job hash, its stream entry, the state sets,
the dead-letter list) and must be checked against the lease token in the same step. With
separate commands a worker whose lease was just taken over could still complete the job
between its check and its write; in a script nothing runs in between.

Every script gets the same KEYS (``Keys.for_job``): 1 job hash, 2 its priority's stream,
3 delayed set, 4 dead-letter list, 5 events stream, 6 cancelling set, 7..13 the
``jobs:<state>`` sets in ``STATES`` order; ``submit`` also gets 14, the idempotency key, and
15.. the claim keys of the job's outputs. Every script's last two ARGV are the retention
times (``result_ttl_s``, ``dead_ttl_s``): a job that reaches a final state expires with its
output claims after that long (0: kept). Times come from the Redis server's clock (``TIME``),
so workers with skewed clocks agree on deadlines and retries.

Keys derived inside a script (another job's hash for an idempotency key or an output claim,
a job's claim keys) are named from the job key's prefix: fine on one Redis server or a
replicated pair, not on Redis Cluster (the queue does not support Cluster).
"""

from __future__ import annotations

from typing import Any

import redis

from worker.constants import EVENTS_MAXLEN, STATES

__all__ = ["Scripts"]

_PRELUDE = """
local STATES = {@STATES@}
local RESULT_TTL = tonumber(ARGV[#ARGV - 1])
local DEAD_TTL = tonumber(ARGV[#ARGV])
local PREFIX = string.match(KEYS[1], '^(.*)job:[^:]*$')
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local function state_key(s)
  for i, name in ipairs(STATES) do if name == s then return KEYS[6 + i] end end
  error('unknown job state ' .. tostring(s))
end
local function final(s)
  return s == 'done' or s == 'failed' or s == 'cancelled' or s == 'dead'
end
-- A job in a final state expires, with the claims on its outputs, after its retention time;
-- back in the queue (requeue) it is kept again.
local function retain(new)
  local ttl = 0
  if final(new) then ttl = (new == 'dead') and DEAD_TTL or RESULT_TTL end
  local keys = {KEYS[1]}
  local claims = redis.call('HGET', KEYS[1], 'claims') or ''
  for k in string.gmatch(claims, '%S+') do keys[#keys + 1] = k end
  for _, k in ipairs(keys) do
    if ttl > 0 then redis.call('EXPIRE', k, ttl) else redis.call('PERSIST', k) end
  end
  -- Its idempotency key goes with it (sooner, never later, than the key's own time).
  local key = redis.call('HGET', KEYS[1], 'key') or ''
  if ttl > 0 and key ~= '' then
    local idem = PREFIX .. 'idem:' .. key
    if redis.call('GET', idem) == redis.call('HGET', KEYS[1], 'id') then
      redis.call('EXPIRE', idem, ttl, 'LT')
    end
  end
end
local function move(id, old, new, t)
  if old then redis.call('ZREM', state_key(old), id) end
  redis.call('ZADD', state_key(new), t, id)
  redis.call('HSET', KEYS[1], 'state', new, 'updated', fmt(t))
  if final(new) then redis.call('ZREM', KEYS[6], id) end
  if final(new) or final(old or '') then retain(new) end
end
-- Whether another job still stands behind an idempotency key or an output claim: a job that
-- failed, died, was cancelled or has expired gives them up.
local function standing(other)
  local st = redis.call('HGET', PREFIX .. 'job:' .. other, 'state')
  return st and not (st == 'failed' or st == 'dead' or st == 'cancelled')
end
local function event(id, what, worker, detail)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', '@EVENTS_MAXLEN@', '*', 'job', id, 'event', what,
    'worker', worker or '', 'attempt', redis.call('HGET', KEYS[1], 'attempts') or '0',
    'detail', detail or '')
end
-- Acknowledge, then delete: the work stream is never trimmed, entries leave only this way.
local function drop(group, entry)
  if entry then
    redis.call('XACK', KEYS[2], group, entry)
    redis.call('XDEL', KEYS[2], entry)
  end
end
local function dead_letter(id, err, t)
  redis.call('LPUSH', KEYS[4], cjson.encode({id = id, error = err, at = t,
    attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0'),
    spec = redis.call('HGET', KEYS[1], 'spec') or ''}))
end
local function holds(token)
  return token ~= '' and redis.call('HGET', KEYS[1], 'token') == token
end
"""

# ARGV: id, spec, priority, key ('' none), idempotency ttl, deadline seconds ('' none), group,
#       fingerprint (the spec without its id), then one output path per claim key (KEYS[15..])
_SUBMIT = """
local t = now()
local id = ARGV[1]
if ARGV[4] ~= '' then
  local existing = redis.call('GET', KEYS[14])
  if existing and existing ~= id and standing(existing) then
    if redis.call('HGET', PREFIX .. 'job:' .. existing, 'fingerprint') ~= ARGV[8] then
      return {existing, 'conflict'}
    end
    return {existing, '0'}
  end
end
-- The same id again is the client retrying a call whose reply it lost: already done.
if redis.call('EXISTS', KEYS[1]) == 1 then return {id, '0'} end
local claims = {}
for i = 15, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  local other = holder and string.match(holder, '^(%S+)')
  if other and other ~= id and standing(other) then
    return {other, 'taken', ARGV[8 + i - 14]}
  end
  claims[#claims + 1] = KEYS[i]
end
-- Made here too (BUSYGROUP ignored) so jobs queued before any worker started are not skipped.
redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[7], '0', 'MKSTREAM')
local entry = redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
redis.call('HSET', KEYS[1], 'id', id, 'spec', ARGV[2], 'priority', ARGV[3],
  'attempts', '0', 'handbacks', '0', 'entry', entry, 'created', fmt(t), 'key', ARGV[4],
  'fingerprint', ARGV[8], 'claims', table.concat(claims, ' '))
for i = 15, #KEYS do redis.call('SET', KEYS[i], id .. ' ' .. ARGV[8 + i - 14]) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'deadline', fmt(t + tonumber(ARGV[6]))) end
move(id, false, 'queued', t)
if ARGV[4] ~= '' then redis.call('SET', KEYS[14], id, 'EX', ARGV[5]) end
event(id, 'submitted', '', ARGV[3])
return {id, '1'}
"""

# ARGV: id, entry, group, consumer, new token, max attempts, spec, priority
_START = """
local t = now()
local id = ARGV[1]
-- Only the consumer the entry is pending under may start it: two workers may have read or
-- claimed it a moment apart, and the fencing token below must change exactly once.
local p = redis.call('XPENDING', KEYS[2], ARGV[3], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[4] then return {'lost'} end
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  -- Written straight into the stream, not through submit (its JSON was valid): adopt it.
  redis.call('HSET', KEYS[1], 'id', id, 'spec', ARGV[7], 'priority', ARGV[8], 'attempts', '0',
    'handbacks', '0', 'entry', ARGV[2], 'created', fmt(t), 'key', '')
  move(id, false, 'queued', t)
  state = 'queued'
  event(id, 'adopted', ARGV[4], '')
end
local live = state == 'queued' or state == 'running'
if redis.call('HGET', KEYS[1], 'entry') ~= ARGV[2] or not live then
  drop(ARGV[3], ARGV[2])
  return {'stale', state}
end
if redis.call('HGET', KEYS[1], 'cancel') == '1' then
  drop(ARGV[3], ARGV[2])
  redis.call('HSET', KEYS[1], 'token', '', 'finished', fmt(t))
  move(id, state, 'cancelled', t)
  event(id, 'cancelled', ARGV[4], 'before it started')
  return {'cancelled'}
end
local deadline = tonumber(redis.call('HGET', KEYS[1], 'deadline') or '')
if deadline and t > deadline then
  drop(ARGV[3], ARGV[2])
  redis.call('HSET', KEYS[1], 'token', '', 'finished', fmt(t),
    'error', 'deadline passed before the job could start')
  move(id, state, 'failed', t)
  event(id, 'failed', ARGV[4], 'deadline')
  return {'failed'}
end
if state == 'running' then
  -- Its holder stopped renewing for a whole lease (killed, machine lost): that attempt failed.
  local err = 'worker ' .. (redis.call('HGET', KEYS[1], 'worker') or '?') ..
    ' stopped renewing its lease'
  redis.call('HSET', KEYS[1], 'error', err)
  local used = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') -
    tonumber(redis.call('HGET', KEYS[1], 'handbacks') or '0')
  if used >= tonumber(ARGV[6]) then
    drop(ARGV[3], ARGV[2])
    redis.call('HSET', KEYS[1], 'token', '', 'finished', fmt(t))
    move(id, state, 'dead', t)
    dead_letter(id, err, t)
    event(id, 'dead', ARGV[4], err)
    return {'dead'}
  end
  event(id, 'taken over', ARGV[4], err)
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'token', ARGV[5], 'worker', ARGV[4], 'started', fmt(t),
  'progress', '')
move(id, state, 'running', t)
event(id, 'started', ARGV[4], '')
return {'ok', tostring(attempts), redis.call('HGET', KEYS[1], 'deadline') or ''}
"""

# ARGV: token, entry, group, consumer, progress JSON ('' none)
_BEAT = """
if not holds(ARGV[1]) then return 'lost' end
-- The owner claiming its own entry again resets its idle time without counting a delivery:
-- that is the lease renewal. Other workers take over only entries idle for a whole lease.
redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[4], 0, ARGV[2], 'JUSTID')
local t = now()
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[5]) end
redis.call('HSET', KEYS[1], 'updated', fmt(t))
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 'cancel' end
local deadline = tonumber(redis.call('HGET', KEYS[1], 'deadline') or '')
if deadline and t > deadline then return 'deadline' end
return 'ok'
"""

# ARGV: token, entry, group, consumer, outcome (done|failed|cancelled|retry|dead|handback),
#       text (result JSON or error), retry delay s, max attempts, handback idle ms,
#       handback consumer
_FINISH = """
if not holds(ARGV[1]) then return 'lost' end
local t = now()
local id = redis.call('HGET', KEYS[1], 'id')
local outcome = ARGV[5]
if outcome == 'handback' then
  redis.call('HINCRBY', KEYS[1], 'handbacks', 1)
  redis.call('HSET', KEYS[1], 'token', '', 'worker', '')
  -- Pending under a placeholder consumer, long idle: any worker's next takeover scan takes it.
  redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[10], 0, ARGV[2], 'IDLE', ARGV[9], 'JUSTID')
  move(id, 'running', 'queued', t)
  event(id, 'handed back', ARGV[4], ARGV[6])
  return 'queued'
end
redis.call('HSET', KEYS[1], 'token', '')
if outcome == 'retry' then
  local used = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') -
    tonumber(redis.call('HGET', KEYS[1], 'handbacks') or '0')
  if used < tonumber(ARGV[8]) then
    drop(ARGV[3], ARGV[2])
    local at = t + tonumber(ARGV[7])
    redis.call('HSET', KEYS[1], 'error', ARGV[6], 'retry_at', fmt(at))
    redis.call('ZADD', KEYS[3], at, id)
    move(id, 'running', 'retrying', t)
    event(id, 'retrying', ARGV[4], ARGV[6])
    return 'retrying'
  end
  outcome = 'dead'
end
drop(ARGV[3], ARGV[2])
redis.call('HSET', KEYS[1], 'finished', fmt(t))
if outcome == 'done' then
  redis.call('HSET', KEYS[1], 'result', ARGV[6], 'error', '')
else
  redis.call('HSET', KEYS[1], 'error', ARGV[6])
end
if outcome == 'dead' then dead_letter(id, ARGV[6], t) end
move(id, 'running', outcome, t)
event(id, outcome, ARGV[4], outcome == 'done' and '' or ARGV[6])
return outcome
"""

# ARGV: id, group
_REQUEUE = """
local t = now()
if redis.call('HGET', KEYS[1], 'state') ~= 'retrying' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
if tonumber(redis.call('HGET', KEYS[1], 'retry_at') or '0') > t then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[2], '0', 'MKSTREAM')
local entry = redis.call('XADD', KEYS[2], '*', 'job', redis.call('HGET', KEYS[1], 'spec'))
redis.call('HSET', KEYS[1], 'entry', entry)
move(ARGV[1], 'retrying', 'queued', t)
event(ARGV[1], 'requeued', '', '')
return 1
"""

# ARGV: id, group
_CANCEL = """
local t = now()
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'queued' or state == 'retrying' then
  drop(ARGV[2], redis.call('HGET', KEYS[1], 'entry'))
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HSET', KEYS[1], 'cancel', '1', 'token', '', 'finished', fmt(t))
  move(ARGV[1], state, 'cancelled', t)
  event(ARGV[1], 'cancelled', '', 'before it started')
  return 'cancelled'
end
if state == 'running' then
  -- The holder sees the flag on its next heartbeat and stops; it marks the job cancelled. If
  -- the holder is gone, a worker's janitor finishes the cancel (``reap``) after one lease.
  redis.call('HSET', KEYS[1], 'cancel', '1')
  redis.call('ZADD', KEYS[6], t, ARGV[1])
  event(ARGV[1], 'cancel requested', '', '')
  return 'cancelling'
end
return state
"""

# ARGV: id, group, lease ms. A running job asked to cancel whose holder has not renewed for a
# whole lease: cancelled here, by whichever worker's janitor looks first.
_REAP = """
local t = now()
local id = ARGV[1]
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' or redis.call('HGET', KEYS[1], 'cancel') ~= '1' then
  redis.call('ZREM', KEYS[6], id)
  return 'gone'
end
local entry = redis.call('HGET', KEYS[1], 'entry')
local p = redis.call('XPENDING', KEYS[2], ARGV[2], 'IDLE', tonumber(ARGV[3]), entry, entry, 1)
if #p == 0 then return 'alive' end
drop(ARGV[2], entry)
redis.call('HSET', KEYS[1], 'token', '', 'worker', '', 'finished', fmt(t))
move(id, 'running', 'cancelled', t)
event(id, 'cancelled', '', 'its worker stopped renewing the lease')
return 'cancelled'
"""

# ARGV: id, group. ``worker requeue``: a failed, dead or cancelled job runs again, from scratch.
_RETRY = """
local t = now()
local id = ARGV[1]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if not (state == 'failed' or state == 'dead' or state == 'cancelled') then return state end
redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[2], '0', 'MKSTREAM')
local entry = redis.call('XADD', KEYS[2], '*', 'job', redis.call('HGET', KEYS[1], 'spec'))
redis.call('HSET', KEYS[1], 'entry', entry, 'attempts', '0', 'handbacks', '0', 'cancel', '',
  'token', '', 'worker', '', 'error', '', 'result', '', 'finished', '', 'retry_at', '',
  'progress', '')
move(id, state, 'queued', t)
event(id, 'requeued', '', 'by request, was ' .. state)
return 'queued'
"""

# ARGV: id. ``worker purge``: a job in a final state deleted now, with its output claims (the
# files stay) and its idempotency key if that still names it.
_PURGE = """
local id = ARGV[1]
local state = redis.call('HGET', KEYS[1], 'state')
if not state or not final(state) then return 0 end
local claims = redis.call('HGET', KEYS[1], 'claims') or ''
for k in string.gmatch(claims, '%S+') do
  local holder = redis.call('GET', k)
  if holder and string.match(holder, '^(%S+)') == id then redis.call('DEL', k) end
end
local key = redis.call('HGET', KEYS[1], 'key') or ''
if key ~= '' and redis.call('GET', PREFIX .. 'idem:' .. key) == id then
  redis.call('DEL', PREFIX .. 'idem:' .. key)
end
redis.call('ZREM', state_key(state), id)
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: stream. ARGV: group, consumer, idle ms. A consumer with nothing pending, idle that
# long, leaves the group. Checked and deleted in one step: a consumer that reads an entry in
# between would lose it from the pending list if deleted.
_FORGET = """
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] == ARGV[2] then
    if tonumber(info['pending']) == 0 and tonumber(info['idle']) >= tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
    return 0
  end
end
return 0
"""

# ARGV: entry, group, raw payload (truncated), error, job id ('' if unknown)
_BURY = """
local t = now()
drop(ARGV[2], ARGV[1])
local id = ARGV[5]
if id ~= '' and redis.call('HGET', KEYS[1], 'entry') == ARGV[1] then
  local state = redis.call('HGET', KEYS[1], 'state')
  redis.call('HSET', KEYS[1], 'token', '', 'finished', fmt(t), 'error', ARGV[4])
  move(id, state, 'dead', t)
  event(id, 'dead', '', ARGV[4])
end
redis.call('LPUSH', KEYS[4], cjson.encode({id = id, entry = ARGV[1], error = ARGV[4],
  raw = ARGV[3], at = t}))
return 1
"""


class _Script:
    """One registered script; every call gets the retention times as its last two ARGV."""

    def __init__(self, script: Any, tail: list[int]) -> None:
        self._script = script
        self._tail = tail

    def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        return self._script(keys=keys, args=[*args, *self._tail])


class Scripts:
    """The scripts registered on one client (EVALSHA, reloaded by redis-py after a restart)."""

    def __init__(self, client: redis.Redis, *, result_ttl_s: int = 0, dead_ttl_s: int = 0) -> None:
        prelude = _PRELUDE.replace("@STATES@", ", ".join(f"'{s}'" for s in STATES)).replace(
            "@EVENTS_MAXLEN@", str(EVENTS_MAXLEN)
        )
        tail = [result_ttl_s, dead_ttl_s]

        def reg(body: str) -> _Script:
            return _Script(client.register_script(prelude + body), tail)

        self.submit = reg(_SUBMIT)
        self.start = reg(_START)
        self.beat = reg(_BEAT)
        self.finish = reg(_FINISH)
        self.requeue = reg(_REQUEUE)
        self.cancel = reg(_CANCEL)
        self.bury = reg(_BURY)
        self.reap = reg(_REAP)
        self.retry = reg(_RETRY)
        self.purge = reg(_PURGE)
        # Not about one job: no prelude, no retention times.
        self.forget = client.register_script(_FORGET)
