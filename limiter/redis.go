package limiter

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	spendScript   = mustScript("spend.lua")
	refundScript  = mustScript("refund.lua")
	releaseScript = mustScript("release.lua")
	usageScript   = mustScript("usage.lua")
)

var (
	_ Store       = (*RedisStore)(nil)
	_ Compensator = (*RedisStore)(nil)
)

// RedisStore keeps rolling windows in Redis: per org a ring of per-bucket counters in one
// string (Window/Bucket+1 eight-byte slots), a hash of its head and tail and a running total, all under the org's hash tag so one Lua script
// (one round trip, run by SHA) trims, checks and debits atomically, on a single server or a
// Redis Cluster alike. Time comes from the Redis server's clock unless the caller passes one.
type RedisStore struct {
	client      redis.Scripter
	windowArg   string // ms, preformatted for the script
	bucketArg   string
	leaseTTLArg string
	callTTLArg  any    // ms: how long a debit's record is kept (boxed once: Spend passes it)
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
		callTTLArg:  any(strconv.FormatInt(opts.CallTTL.Milliseconds(), 10)),
		slotArg:     strconv.FormatInt(UsageSlot(opts.Window).Milliseconds(), 10),
		slotMs:      UsageSlot(opts.Window).Milliseconds(),
	}, nil
}

// LoadScripts loads the scripts into the server's cache (on every master of a cluster);
// it doubles as a readiness check. Spend falls back to EVAL if the cache is flushed later.
func (s *RedisStore) LoadScripts(ctx context.Context) error {
	for _, sc := range []*redis.Script{spendScript, refundScript, releaseScript, periodScript, usageScript, renewScript, heartbeatScript} {
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
	keys := key.redis()
	call := callID(key, cost)
	args := s.spendArgs(key, cost, now, call)
	reply, err := spendScript.Run(ctx, s.client, keys.spend, args...).Int64Slice()
	if err != nil {
		if key.Concurrency > 0 && call != "" {
			s.releaseLost(keys, call)
		}
		// The script may have run: the caller compensates Call.
		return Decision{Call: call}, fmt.Errorf("spend %s: %w", key.Org, err)
	}
	return decodeSpend(reply, key, cost, call)
}

// lostReleaseTimeout bounds releaseLost's one attempt.
const lostReleaseTimeout = 2 * time.Second

// releaseLost ends the lease a Spend may have taken though its caller never learned the
// outcome (the reply was lost, or the caller gave up first): the script may have run, and
// its lease would hold one of the org's slots for the lease's whole time to live. Best
// effort, in the background; a lease that was never taken is removed as a no-op.
func (s *RedisStore) releaseLost(keys *RedisKeys, lease string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), lostReleaseTimeout)
		defer cancel()
		_ = releaseScript.Run(ctx, s.client, keys.leases, lease).Err()
	}()
}

// spendArgs returns the ARGV of spend.lua for one call of id call (also its lease id, with a
// cap; "" records no debit); both stores' Spend use it.
func (s *RedisStore) spendArgs(key Key, cost int64, now time.Time, call string) []any {
	nowArg := ""
	if !now.IsZero() {
		nowArg = strconv.FormatInt(now.UnixMilli(), 10)
	}
	var lease string
	if key.Concurrency > 0 && cost > 0 {
		lease = call
	}
	freeArg, addonArg, capArg := key.freeArg, key.addonArg, key.capArg
	if freeArg == nil {
		freeArg, addonArg, capArg = emptyArg, emptyArg, emptyArg
	}
	return []any{cost, key.Limit, s.windowArg, s.bucketArg, nowArg,
		key.Concurrency, key.HeavyConcurrency, lease, s.leaseTTLArg,
		freeArg, addonArg, capArg, key.Rule, s.slotArg, call, s.callTTLArg, forceArg(key)}
}

// decodeSpend turns spend.lua's reply into a Decision.
func decodeSpend(reply []int64, key Key, cost int64, call string) (Decision, error) {
	if len(reply) != 9 {
		return Decision{}, fmt.Errorf("spend %s: script replied %d values, want 9", key.Org, len(reply))
	}
	key.Limit = reply[7] // with add-ons, the script read the add-on limit
	d, err := decide(reply[0], key, cost, reply[1], reply[2], reply[3], reply[4], reply[5], call)
	d.Addon = reply[6]
	if d.Allowed && d.Cost > 0 { // a debit (as the memory store sets it)
		d.Day = reply[8]
	}
	return d, err
}

// Refund implements Store. With the debit's call id, it applies once whatever the retries.
func (s *RedisStore) Refund(ctx context.Context, key Key, d Decision) error {
	if !d.Allowed || d.Cost <= 0 {
		return nil
	}
	return s.refund(ctx, key, d.Cost, d.Bucket, d.Addon, debitDay(d), d.Call, time.Time{})
}

// Compensate implements Compensator. The call's lease, if it took one, is released too
// (a second round trip: compensations are rare).
func (s *RedisStore) Compensate(ctx context.Context, key Key, call string, now time.Time) error {
	if call == "" {
		return nil
	}
	if err := s.refund(ctx, key, 0, 0, 0, 0, call, now); err != nil {
		return err
	}
	return s.Release(ctx, key, Decision{Lease: call})
}

// refund runs refund.lua: by the debit's record when call names one, else (a debit older
// than its record) by the values given; without values, a call with no record is marked so
// that its debit, if it comes, does nothing.
func (s *RedisStore) refund(ctx context.Context, key Key, cost, bucket, addon, day int64, call string, now time.Time) error {
	free := emptyArg
	if key.addons() {
		free = key.freeArg
	}
	at := ""
	if !now.IsZero() {
		at = strconv.FormatInt(now.UnixMilli(), 10)
	}
	if err := refundScript.Run(ctx, s.client, key.redis().refund, cost, strconv.FormatInt(bucket, 10),
		s.windowArg, s.bucketArg, addon, day, key.Rule, s.slotArg, free,
		call, s.callTTLArg, at).Err(); err != nil {
		return fmt.Errorf("refund %s: %w", key.Org, err)
	}
	return nil
}

// Release implements Store.
func (s *RedisStore) Release(ctx context.Context, key Key, d Decision) error {
	if d.Lease == "" {
		return nil
	}
	if err := releaseScript.Run(ctx, s.client, key.redis().leases, d.Lease).Err(); err != nil {
		return fmt.Errorf("release %s: %w", key.Org, err)
	}
	return nil
}

func forceArg(k Key) any {
	if k.Force {
		return "1"
	}
	return emptyArg
}
