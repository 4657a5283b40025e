package limiter

import "strings"

// RedisKeys names the Redis keys of one org. Every name carries the org's hash tag ({org}),
// so each script touches one Redis Cluster slot. Build it with NewRedisKeys.
type RedisKeys struct {
	// Ring and Pos hold the window: Pos its head, tail, running total and layout, and the
	// credits of its buckets while they are few (sparse), Ring the per-bucket counters once
	// they are many. Used is where windows written before the total moved into Pos keep it;
	// the scripts move it on their next write.
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
	// Notify holds the org's notice settings set through the admin API, Fired the thresholds
	// that fired and the level each fired at, Outbox the notice events waiting for delivery,
	// OutboxLease the gateway delivering them, and OutboxTries the attempts made per event
	// and when the next may be.
	Notify, Fired, Outbox, OutboxLease, OutboxTries string

	// The KEYS of each script, in its header's order, built once from the names above.
	spend, refund, settle, usage, leases, period, outbox []string
}

// NewRedisKeys returns the Redis keys of org. The names share one string and the scripts'
// KEYS one array, so this makes three allocations: a monthly plan's calls build them per call.
func NewRedisKeys(org string) *RedisKeys {
	k := &RedisKeys{}
	// The window's keys are named for their layout (a ring since the sorted set and hash of
	// earlier versions), so a server holding the old layout never meets a script expecting
	// the new one.
	names := [...]struct {
		field  *string
		suffix string
	}{
		{&k.Ring, "ring"}, {&k.Pos, "pos"}, {&k.Used, "used"},
		{&k.InFlight, "inflight"}, {&k.Heavy, "heavy"},
		{&k.Addon, "addon"}, {&k.Meter, "meter"},
		{&k.Period, "period"},
		{&k.Usage, "use"}, {&k.UsageIndex, "useidx"},
		{&k.Calls, "calls"},
		{&k.Notify, "notify"}, {&k.Fired, "fired"}, {&k.Outbox, "outbox"},
		{&k.OutboxLease, "outbox:lease"}, {&k.OutboxTries, "outbox:tries"},
	}
	const open, close = "cg:{", "}:"
	var b strings.Builder
	b.Grow(len(names)*(len(open)+len(org)+len(close)) + 64)
	for _, n := range names {
		b.WriteString(open)
		b.WriteString(org)
		b.WriteString(close)
		b.WriteString(n.suffix)
	}
	all := b.String()
	at := 0
	for _, n := range names {
		end := at + len(open) + len(org) + len(close) + len(n.suffix)
		*n.field = all[at:end]
		at = end
	}

	lists := make([]string, 0, 40)
	list := func(keys ...string) []string {
		from := len(lists)
		lists = append(lists, keys...)
		return lists[from:len(lists):len(lists)]
	}
	k.spend = list(k.Ring, k.Pos, k.Used, k.InFlight, k.Heavy, k.Addon, k.Meter, k.Usage, k.UsageIndex, k.Calls,
		k.Notify, k.Fired, k.Outbox)
	k.refund = list(k.Ring, k.Pos, k.Used, k.Meter, k.Usage, k.UsageIndex, k.Calls, k.Fired)
	k.settle = list(k.Ring, k.Pos, k.Used, k.Meter, k.Usage, k.UsageIndex, k.Calls, k.Fired, k.Addon, k.Notify, k.Outbox)
	k.usage = list(k.Ring, k.Pos, k.Used, k.InFlight, k.Heavy, k.Addon, k.Usage, k.UsageIndex)
	k.leases = list(k.InFlight, k.Heavy)
	k.period = list(k.Period, k.Addon, k.Meter)
	k.outbox = list(k.Outbox, k.OutboxLease, k.OutboxTries)
	return k
}

// All returns every key of the org, for tools and tests that inspect them.
func (k *RedisKeys) All() []string {
	return []string{k.Ring, k.Pos, k.Used, k.InFlight, k.Heavy, k.Addon, k.Meter, k.Period, k.Usage, k.UsageIndex, k.Calls,
		k.Notify, k.Fired, k.Outbox, k.OutboxLease, k.OutboxTries}
}

// Window returns the keys of the org's window: Ring, Pos and (in older windows) Used.
func (k *RedisKeys) Window() []string { return []string{k.Ring, k.Pos, k.Used} }

// redisKeys returns key's Redis keys: those NewKey built, else (a Key built by hand) new ones.
func (key Key) redis() *RedisKeys {
	if key.redisKeys != nil {
		return key.redisKeys
	}
	return NewRedisKeys(key.Org)
}
