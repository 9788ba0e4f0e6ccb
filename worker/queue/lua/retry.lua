-- ARGV: id, group. ``worker requeue``: a failed, dead or cancelled job runs again, from scratch.
local t = now()
local id = ARGV[1]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if not (state == 'failed' or state == 'dead' or state == 'cancelled') then return state end
redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[2], '0', 'MKSTREAM')
local entry = redis.call('XADD', KEYS[2], '*', 'job', redis.call('HGET', KEYS[1], 'spec'))
redis.call('HSET', KEYS[1], 'entry', entry, 'attempts', '0', 'handbacks', '0', 'cancel', '',
  'token', '', 'worker', '', 'error', '', 'result', '', 'finished', '', 'retry_at', '',
  'progress', '')
move(id, state, 'queued', t)
event(id, 'requeued', '', 'by request, was ' .. state)
return 'queued'
