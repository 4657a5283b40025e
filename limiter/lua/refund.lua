-- refund.lua: give back credits of an earlier debit, from the bucket that recorded it.
--
-- If that bucket has expired already, the credits are free anyway and nothing changes.
--
-- KEYS[1]  sorted set: member = bucket start (unix ms), score = the same
-- KEYS[2]  hash: bucket start (unix ms) -> credits
-- KEYS[3]  string: running total of the credits held by live buckets
-- ARGV[1]  credits to give back (integer > 0)
-- ARGV[2]  bucket start (unix ms) named by the debit
-- KEYS[9..10], ARGV[13..14]: usage by rule, as in spend.lua (the slots in between are unused
-- here, so the numbers match spend.lua's).
--
-- Reply (integer): the credits given back (0 when the bucket had expired)

local credits = tonumber(ARGV[1])
local member = ARGV[2]

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
-- Usage by rule (KEYS[9..10], ARGV[13..14], as in spend.lua): the refunded credits leave the
-- slot and rule they were recorded under.
local rule = ARGV[13] or ''
local slot = tonumber(ARGV[14] or '0') or 0
if rule ~= '' and slot > 0 then
	local b = tonumber(member)
	local m = string.format('%d', b - b % slot) .. ':' .. rule
	local rec = tonumber(redis.call('HGET', KEYS[9], m) or '0')
	if rec > 0 then
		if rec <= credits then
			redis.call('HDEL', KEYS[9], m)
			redis.call('ZREM', KEYS[10], m)
		else
			redis.call('HINCRBY', KEYS[9], m, -credits)
		end
	end
end
-- End of usage by rule.

return credits
