-- outbox_claim.lua: take an org's notice outbox for delivery, for a lease, and read its
-- oldest events (limiter.RedisStore.ClaimNotices).
--
-- KEYS (limiter.RedisKeys, outbox list)
--   [1]  outbox      stream: the org's notice events (spend.lua's KEYS[13])
--   [2]  lease       string: "<owner>:<until ms>", the owner delivering them and until when
--                    (on the gateways' clock; the key also expires then, by the server's)
--   [3]  tries       hash: entry id -> failed delivery attempts; "~next" -> unix ms before
--                    which no attempt is made (backoff)
--
-- ARGV
--   [1]  owner       the claiming gateway's id
--   [2]  lease_ms    how long the claim lasts unless settled
--   [3]  count       events to read at most
--   [4]  now         unix ms (the gateway's clock, as ~next)
--
-- Reply (limiter.decodeClaimReply): {status, at_ms, events...}
--   status  0: no events (the org leaves the index); 2: not now, try again at at_ms (a
--           backoff, or a lease not over, the owner's own included); 1: claimed, followed
--           by the events
--   events  {id, p, used, limit, at, w, tries} each, strings, oldest first (fields of
--           lib.lua notices; tries: failed attempts so far)

local outbox, lease, tries = KEYS[1], KEYS[2], KEYS[3]
local owner, lease_ms, count, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

if redis.call('XLEN', outbox) == 0 then
	redis.call('DEL', tries)
	return {0, 0}
end
local next_ms = tonumber(redis.call('HGET', tries, '~next') or '0')
if next_ms > now then
	return {2, next_ms}
end
local holder, until_ms = string.match(redis.call('GET', lease) or '', '^(.*):(%d+)$')
if holder and tonumber(until_ms) > now then -- the owner's own too: it is delivering them
	return {2, tonumber(until_ms)}
end
redis.call('SET', lease, owner .. ':' .. string.format('%d', now + lease_ms), 'PX', lease_ms)
local out = {1, 0}
for _, e in ipairs(redis.call('XRANGE', outbox, '-', '+', 'COUNT', count)) do
	local f = {}
	for i = 1, #e[2], 2 do
		f[e[2][i]] = e[2][i + 1]
	end
	out[#out + 1] = {e[1], f.p or '0', f.used or '0', f.limit or '0', f.at or '0', f.w or '0',
		redis.call('HGET', tries, e[1]) or '0'}
end
return out
