-- ARGV: id, spec, priority, key ('' none), idempotency ttl, deadline seconds ('' none), group,
--       fingerprint (the spec without its id), then one output path per claim key (KEYS[15..])
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
