-- ARGV: entry, group, raw payload (truncated), error, job id ('' if unknown)
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
