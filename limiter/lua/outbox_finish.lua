-- outbox_finish.lua: end a claim on an org's notice outbox (limiter.RedisStore.FinishNotices):
-- the events done leave it, a failed one counts an attempt and sets the backoff, the lease
-- goes if the owner still holds it.
--
-- KEYS (limiter.RedisKeys, outbox list; outbox_claim.lua's header says what each holds)
--   [1]  outbox      stream
--   [2]  lease       string
--   [3]  tries       hash
--
-- ARGV
--   [1]  owner       the settling gateway's id
--   [2]  failed      entry id of the event whose attempt failed ("" none)
--   [3]  retry       unix ms: no attempt before (with failed)
--   [4]… done        entry ids of the events delivered or given up on
--
-- Reply (integer): the events left in the outbox

local outbox, lease, tries = KEYS[1], KEYS[2], KEYS[3]
local owner, failed, retry = ARGV[1], ARGV[2], ARGV[3]

for i = 4, #ARGV do
	redis.call('XDEL', outbox, ARGV[i])
	redis.call('HDEL', tries, ARGV[i])
end
if failed ~= '' then
	redis.call('HINCRBY', tries, failed, 1)
	redis.call('HSET', tries, '~next', retry)
else
	redis.call('HDEL', tries, '~next')
end
if string.match(redis.call('GET', lease) or '', '^(.*):%d+$') == owner then
	redis.call('DEL', lease)
end
return redis.call('XLEN', outbox)
