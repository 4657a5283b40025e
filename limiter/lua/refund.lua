-- refund.lua: give back credits of an earlier debit, from the bucket that recorded it.
--
-- If that bucket has expired already, the credits are free anyway and nothing changes.
--
-- KEYS[1]  sorted set: member = bucket start (unix ms), score = the same
-- KEYS[2]  hash: bucket start (unix ms) -> credits
-- KEYS[3]  string: running total of the credits held by live buckets
-- ARGV[1]  credits to give back (integer > 0)
-- ARGV[2]  bucket start (unix ms) named by the debit
-- KEYS[4]  billing: hash UTC day -> add-on credits consumed (the meter of spend.lua)
-- ARGV[3]  billing: add-on credits the debit metered (0 or absent: none)
-- ARGV[4]  billing: the UTC day (days since 1970-01-01) they were metered on
--
-- Reply (integer): the credits given back (0 when the bucket had expired)

local credits = tonumber(ARGV[1])
local member = ARGV[2]

-- Billing: un-meter exactly what the debit metered, even when its bucket has expired: a call
-- the gateway refunds was never served, so it is never billed.
local unmeter = tonumber(ARGV[3] or '0') or 0
if unmeter > 0 then
	if redis.call('HINCRBY', KEYS[4], ARGV[4], -unmeter) <= 0 then
		redis.call('HDEL', KEYS[4], ARGV[4])
	end
end

local held = tonumber(redis.call('HGET', KEYS[2], member) or '0')
if held <= 0 then
	return 0
end
if credits > held then
	credits = held
end
if held == credits then
	redis.call('HDEL', KEYS[2], member)
	redis.call('ZREM', KEYS[1], member)
else
	redis.call('HINCRBY', KEYS[2], member, -credits)
end

local total = tonumber(redis.call('GET', KEYS[3]) or '0') - credits
if total <= 0 then
	redis.call('DEL', KEYS[3])
else
	redis.call('SET', KEYS[3], string.format('%d', total), 'KEEPTTL')
end
return credits
