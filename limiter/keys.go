package limiter

// RedisKeys names the Redis keys of one org. Every name carries the org's hash tag ({org}),
// so each script touches one Redis Cluster slot. Build it with NewRedisKeys.
type RedisKeys struct {
	// Ring, Pos and Used hold the window: the per-bucket counters, the ring's head, tail and
	// layout, and the running total of the credits held.
	Ring, Pos, Used string
	// InFlight and Heavy are the concurrency leases: calls in flight, and heavy calls in
	// flight, each a lease id scored by its expiry.
	InFlight, Heavy string
	// Addon is the add-on limit (or additional calls) set through the admin API, Meter the
	// add-on credits (or additional calls) consumed per UTC day.
	Addon, Meter string
	// Period is a monthly plan's calls per subscription period.
	Period string
	// Usage holds the credits per usage slot and rule, UsageIndex the same members scored by
	// slot start.
	Usage, UsageIndex string
	// Calls holds the record of each debit by call id.
	Calls string

	// The KEYS of each script, in its header's order, built once from the names above.
	spend, refund, usage, leases, period []string
}

// NewRedisKeys returns the Redis keys of org.
func NewRedisKeys(org string) *RedisKeys {
	prefix := "cg:{" + org + "}:"
	// The window's keys are named for their layout (a ring since the sorted set and hash of
	// earlier versions), so a server holding the old layout never meets a script expecting
	// the new one.
	k := &RedisKeys{
		Ring: prefix + "ring", Pos: prefix + "pos", Used: prefix + "used",
		InFlight: prefix + "inflight", Heavy: prefix + "heavy",
		Addon: prefix + "addon", Meter: prefix + "meter",
		Period: prefix + "period",
		Usage:  prefix + "use", UsageIndex: prefix + "useidx",
		Calls: prefix + "calls",
	}
	k.spend = []string{k.Ring, k.Pos, k.Used, k.InFlight, k.Heavy, k.Addon, k.Meter, k.Usage, k.UsageIndex, k.Calls}
	k.refund = []string{k.Ring, k.Pos, k.Used, k.Meter, k.Usage, k.UsageIndex, k.Calls}
	k.usage = []string{k.Ring, k.Pos, k.Used, k.InFlight, k.Heavy, k.Addon, k.Usage, k.UsageIndex}
	k.leases = []string{k.InFlight, k.Heavy}
	k.period = []string{k.Period, k.Addon, k.Meter}
	return k
}

// All returns every key of the org, for tools and tests that inspect them.
func (k *RedisKeys) All() []string {
	return []string{k.Ring, k.Pos, k.Used, k.InFlight, k.Heavy, k.Addon, k.Meter, k.Period, k.Usage, k.UsageIndex, k.Calls}
}

// Window returns the keys of the org's window: Ring, Pos and Used.
func (k *RedisKeys) Window() []string { return []string{k.Ring, k.Pos, k.Used} }

// redisKeys returns key's Redis keys: those NewKey built, else (a Key built by hand) new ones.
func (key Key) redis() *RedisKeys {
	if key.redisKeys != nil {
		return key.redisKeys
	}
	return NewRedisKeys(key.Org)
}
