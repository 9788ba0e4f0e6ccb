-- ARGV: id, group
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
