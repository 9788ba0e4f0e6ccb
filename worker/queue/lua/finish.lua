-- ARGV: token, entry, group, consumer, outcome (done|failed|cancelled|retry|dead|handback),
--       text (result JSON or error), retry delay s, max attempts, handback idle ms,
--       handback consumer
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
