-- renew.lua: extend the concurrency leases of one org's calls still in flight.
--
-- A lease that expired or was released is not brought back: its slot may be another call's
-- by now. Every lease a set holds expires by now + ttl, so the sets' own expiry is set to ttl.
--
-- KEYS (limiter.RedisKeys, leases list)
-- KEYS[1]  sorted set: lease id -> expiry (unix ms) of the org's calls in flight
-- KEYS[2]  sorted set: the same for its heavy calls in flight
-- ARGV[1]  now (unix ms), or "" to use the Redis server's clock (TIME)
-- ARGV[2]  lease time to live (ms)
-- ARGV[3…] lease ids
--
-- Reply (integer): the number of leases renewed

local now = clock_ms(ARGV[1])
local ttl = tonumber(ARGV[2])

local renewed = 0
for k = 1, 2 do
	local any = false
	for i = 3, #ARGV do
		local exp = redis.call('ZSCORE', KEYS[k], ARGV[i])
		if exp and tonumber(exp) > now then
			redis.call('ZADD', KEYS[k], now + ttl, ARGV[i])
			any = true
			if k == 1 then
				renewed = renewed + 1
			end
		end
	end
	if any then
		redis.call('PEXPIRE', KEYS[k], ttl)
	end
end
return renewed
