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
