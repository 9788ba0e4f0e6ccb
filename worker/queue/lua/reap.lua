-- ARGV: id, group, lease ms. A running job asked to cancel whose holder has not renewed for a
-- whole lease: cancelled here, by whichever worker's janitor looks first.
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
