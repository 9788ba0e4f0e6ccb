-- ARGV: id, entry, group, consumer, new token, max attempts, spec, priority
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
