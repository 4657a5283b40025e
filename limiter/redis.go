package limiter

import (
	"context"
	"embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFS embed.FS

var (
	spendScript   = mustScript("lua/spend.lua")
	refundScript  = mustScript("lua/refund.lua")
	releaseScript = mustScript("lua/release.lua")
	usageScript   = mustScript("lua/usage.lua")
)

func mustScript(name string) *redis.Script {
	src, err := luaFS.ReadFile(name)
	if err != nil {
		panic("limiter: missing embedded script " + name)
	}
	return redis.NewScript(string(src))
}

var _ Store = (*RedisStore)(nil)

// RedisStore keeps rolling windows in Redis: per org a ring of per-bucket counters in one
// string (Window/Bucket+1 eight-byte slots), a hash of its head and tail and a running total, all under the org's hash tag so one Lua script
// (one round trip, run by SHA) trims, checks and debits atomically, on a single server or a
// Redis Cluster alike. Time comes from the Redis server's clock unless the caller passes one.
type RedisStore struct {
	client      redis.Scripter
	windowArg   string // ms, preformatted for the script
	bucketArg   string
	leaseTTLArg string
	slotArg     string // usage slot (ms), spend.lua's ARGV[14]
	slotMs      int64
}

// NewRedisStore returns a RedisStore on client: a *redis.Client, *redis.ClusterClient,
// *redis.Ring or any go-redis UniversalClient.
func NewRedisStore(client redis.Scripter, opts Options) (*RedisStore, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &RedisStore{
		client:      client,
		windowArg:   strconv.FormatInt(opts.Window.Milliseconds(), 10),
		bucketArg:   strconv.FormatInt(opts.Bucket.Milliseconds(), 10),
		leaseTTLArg: strconv.FormatInt(opts.LeaseTTL.Milliseconds(), 10),
		slotArg:     strconv.FormatInt(UsageSlot(opts.Window).Milliseconds(), 10),
		slotMs:      UsageSlot(opts.Window).Milliseconds(),
	}, nil
}

// LoadScripts loads the scripts into the server's cache (on every master of a cluster);
// it doubles as a readiness check. Spend falls back to EVAL if the cache is flushed later.
func (s *RedisStore) LoadScripts(ctx context.Context) error {
	for _, sc := range []*redis.Script{spendScript, refundScript, releaseScript, periodScript, usageScript, renewScript} {
		if err := sc.Load(ctx, s.client).Err(); err != nil {
			return fmt.Errorf("load scripts: %w", err)
		}
	}
	return nil
}

// Spend implements Store.
func (s *RedisStore) Spend(ctx context.Context, key Key, cost int64, now time.Time) (Decision, error) {
	if err := checkCost(key, cost); err != nil {
		return Decision{}, err
	}
	keys, args, lease := s.spendArgs(key, cost, now)
	reply, err := spendScript.Run(ctx, s.client, keys, args...).Int64Slice()
	if err != nil {
		if lease != "" {
			s.releaseLost(keys, lease)
		}
		return Decision{}, fmt.Errorf("spend %s: %w", key.Org, err)
	}
	return decodeSpend(reply, key, cost, lease)
}

// lostReleaseTimeout bounds releaseLost's one attempt.
const lostReleaseTimeout = 2 * time.Second

// releaseLost ends the lease a Spend may have taken though its caller never learned the
// outcome (the reply was lost, or the caller gave up first): the script may have run, and
// its lease would hold one of the org's slots for the lease's whole time to live. Best
// effort, in the background; a lease that was never taken is removed as a no-op.
func (s *RedisStore) releaseLost(keys []string, lease string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), lostReleaseTimeout)
		defer cancel()
		_ = releaseScript.Run(ctx, s.client, keys[3:5], lease).Err()
	}()
}

// spendArgs returns the KEYS and ARGV of spend.lua for one call (both stores' Spend use it),
// and the lease id the call takes, if any.
func (s *RedisStore) spendArgs(key Key, cost int64, now time.Time) ([]string, []any, string) {
	nowArg := ""
	if !now.IsZero() {
		nowArg = strconv.FormatInt(now.UnixMilli(), 10)
	}
	keys := key.redisKeys
	if keys == nil {
		keys = redisKeysFor(key.Org)
	}
	var lease string
	if key.Concurrency > 0 && cost > 0 {
		lease = newLeaseID()
	}
	freeArg, addonArg, capArg := key.freeArg, key.addonArg, key.capArg
	if freeArg == nil {
		freeArg, addonArg, capArg = emptyArg, emptyArg, emptyArg
	}
	return keys, []any{cost, key.Limit, s.windowArg, s.bucketArg, nowArg,
		key.Concurrency, key.HeavyConcurrency, lease, s.leaseTTLArg,
		freeArg, addonArg, capArg, key.Rule, s.slotArg}, lease
}

// decodeSpend turns spend.lua's reply into a Decision.
func decodeSpend(reply []int64, key Key, cost int64, lease string) (Decision, error) {
	if len(reply) != 9 {
		return Decision{}, fmt.Errorf("spend %s: script replied %d values, want 9", key.Org, len(reply))
	}
	key.Limit = reply[7] // with add-ons, the script read the add-on limit
	d, err := decide(reply[0], key, cost, reply[1], reply[2], reply[3], reply[4], reply[5], lease)
	d.Addon = reply[6]
	if d.Allowed && d.Cost > 0 { // a debit (as the memory store sets it)
		d.Day = reply[8]
	}
	return d, err
}

// Refund implements Store.
func (s *RedisStore) Refund(ctx context.Context, key Key, d Decision) error {
	if !d.Allowed || d.Cost <= 0 {
		return nil
	}
	keys := key.redisKeys
	if keys == nil {
		keys = redisKeysFor(key.Org)
	}
	refundKeys := []string{keys[0], keys[1], keys[2], keys[6], keys[8], keys[9]}
	free := emptyArg
	if key.addons() {
		free = key.freeArg
	}
	if err := refundScript.Run(ctx, s.client, refundKeys, d.Cost, strconv.FormatInt(d.Bucket, 10),
		s.windowArg, s.bucketArg, d.Addon, debitDay(d), key.Rule, s.slotArg, free).Err(); err != nil {
		return fmt.Errorf("refund %s: %w", key.Org, err)
	}
	return nil
}

// Release implements Store.
func (s *RedisStore) Release(ctx context.Context, key Key, d Decision) error {
	if d.Lease == "" {
		return nil
	}
	keys := key.redisKeys
	if keys == nil {
		keys = redisKeysFor(key.Org)
	}
	if err := releaseScript.Run(ctx, s.client, keys[3:5], d.Lease).Err(); err != nil {
		return fmt.Errorf("release %s: %w", key.Org, err)
	}
	return nil
}

// RedisKeys returns the Redis keys of org in spend.lua's KEYS order: its window (ring, ring
// positions, total), its leases (calls in flight, heavy calls in flight), billing (add-on
// limit, meter, period calls) and its usage by rule (hash, sorted set), for tools and tests
// that inspect them.
func RedisKeys(org string) []string { return redisKeysFor(org) }
