-- heartbeat.lua: a gateway says it is alive, and learns how many are.
--
-- KEYS[1]  sorted set: gateway id -> when its heartbeat expires (unix ms)
-- ARGV[1]  this gateway's id
-- ARGV[2]  how long its heartbeat lasts (ms)
--
-- Reply (integer): the gateways alive, this one included

local now = clock_ms('')
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
