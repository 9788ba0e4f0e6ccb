-- ARGV: id, group
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
