-- ARGV: id. ``worker purge``: a job in a final state deleted now, with its output claims (the
-- files stay) and its idempotency key if that still names it.
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
