-- ARGV: token, entry, group, consumer, progress JSON ('' none)
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
