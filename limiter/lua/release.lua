-- release.lua: end a call's concurrency lease.
--
-- KEYS[1]  sorted set: lease id -> expiry of the org's calls in flight
-- KEYS[2]  sorted set: the same for its heavy calls in flight
-- ARGV[1]  lease id
--
-- Reply (integer): the number of sets the lease was removed from (0 when it had expired)

return redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
