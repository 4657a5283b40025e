package limiter

import (
	"context"
	"fmt"
	"strconv"
	"sync"
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
	leaseTTLArg string // ms, for renew.lua
	slotMs      int64  // usage slot (ms)

	// The store's group of each script's ARGV (see the scripts' headers), formatted and
	// boxed once: boxing a string per call allocates.
	spendStore, refundStore, usageStore, settleStore []any

	sweepMu sync.Mutex
	sweepAt map[string]uint64 // SweepNotices' SCAN cursor per master address
}

// NewRedisStore returns a RedisStore on client: a *redis.Client, *redis.ClusterClient,
// *redis.Ring or any go-redis UniversalClient.
func NewRedisStore(client redis.Scripter, opts Options) (*RedisStore, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ms := func(d time.Duration) any { return strconv.FormatInt(d.Milliseconds(), 10) }
	window, bucket, slot := ms(opts.Window), ms(opts.Bucket), ms(UsageSlot(opts.Window))
	slots := strconv.FormatInt(ringSlots(opts.Window.Milliseconds(), opts.Bucket.Milliseconds()), 10)
	leaseTTL, callTTL := ms(opts.LeaseTTL), ms(opts.CallTTL)
	return &RedisStore{
		client:      client,
		leaseTTLArg: leaseTTL.(string),
		slotMs:      UsageSlot(opts.Window).Milliseconds(),
		spendStore:  []any{window, bucket, slots, leaseTTL, slot, callTTL, meterDaysArg, outboxMaxArg},
		refundStore: []any{bucket, slots, slot, callTTL},
		usageStore:  []any{window, bucket, slots, slot},
		settleStore: []any{window, bucket, slots, slot, callTTL, meterDaysArg, outboxMaxArg},
	}, nil
}

// LoadScripts loads the scripts into the server's cache (on every master of a cluster);
// it doubles as a readiness check. Spend falls back to EVAL if the cache is flushed later.
func (s *RedisStore) LoadScripts(ctx context.Context) error {
	for _, sc := range []script{spendScript, refundScript, settleScript, releaseScript, periodScript, usageScript, renewScript, heartbeatScript, claimScript, finishScript} {
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
	cmd := s.spendCommand(keys, key, cost, now, call)
	reply, err := spendScript.runInts(ctx, s.client, keys.spend, cmd)
	if err != nil {
		if key.Concurrency > 0 && call != "" {
			s.releaseLost(keys, call)
		}
		// The script may have run: the caller compensates Call.
		return Decision{Call: call}, fmt.Errorf("spend %s: %w", key.Org, err)
	}
	return decodeSpend(reply, key, call)
}

// lostReleaseTimeout bounds releaseLost's attempts, lostReleasePause spaces them.
const (
	lostReleaseTimeout = 2 * time.Second
	lostReleasePause   = 100 * time.Millisecond
)

// releaseLost ends the lease a Spend may have taken though its caller never learned the
// outcome (the reply was lost, or the caller gave up first): the script may have run, and
// its lease would hold one of the org's slots for the lease's whole time to live. Best
// effort, in the background, tried again until Redis answers within lostReleaseTimeout (the
// stall that lost the Spend's reply may outlast one attempt's read timeout); a release is
// idempotent, and a lease that was never taken is removed as a no-op.
func (s *RedisStore) releaseLost(keys *RedisKeys, lease string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), lostReleaseTimeout)
		defer cancel()
		pause := time.NewTimer(0)
		defer pause.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-pause.C:
			}
			if releaseScript.Run(ctx, s.client, keys.leases, lease).Err() == nil {
				return
			}
			pause.Reset(lostReleasePause)
		}
	}()
}

// spendCommand returns the EVALSHA of spend.lua for one call of id call (also its lease id,
// with a cap; "" records no debit), its ARGV in the groups of the script's header; both
// stores' Spend send it.
func (s *RedisStore) spendCommand(keys *RedisKeys, key Key, cost int64, now time.Time, call string) []any {
	callArg, lease := any(call), emptyArg // the call's id boxed once: with a cap it is the lease's too
	if key.Concurrency > 0 && cost > 0 {
		lease = callArg
	}
	addons := key.addonArgs()
	cmd := spendScript.command(keys.spend, 5+4+len(addons)+len(s.spendStore)+1)
	cmd = append(cmd, cost, msArg(now), callArg, lease, forceArg(key))                   // the call
	cmd = append(cmd, key.limitValue(), key.Concurrency, key.HeavyConcurrency, key.Rule) // the key
	cmd = append(cmd, addons...)                                                         // its add-ons
	cmd = append(cmd, s.spendStore...)                                                   // the store
	return append(cmd, key.noticeArg())                                                  // its notices
}

// spendReply is spend.lua's reply, field for field (its header says what each means).
type spendReply struct {
	status, used, retryAfterMs, resetMs, bucketMs, inFlight, addon, limit, day, cost, notices int64
}

// decodeSpendReply reads spend.lua's reply: the one place that knows its order.
func decodeSpendReply(v []int64) (spendReply, error) {
	if len(v) != 11 {
		return spendReply{}, fmt.Errorf("script replied %d values, want 11", len(v))
	}
	return spendReply{status: v[0], used: v[1], retryAfterMs: v[2], resetMs: v[3], bucketMs: v[4],
		inFlight: v[5], addon: v[6], limit: v[7], day: v[8], cost: v[9], notices: v[10]}, nil
}

// decodeSpend turns spend.lua's reply into a Decision.
func decodeSpend(v []int64, key Key, call string) (Decision, error) {
	r, err := decodeSpendReply(v)
	if err != nil {
		return Decision{}, fmt.Errorf("spend %s: %w", key.Org, err)
	}
	key.Limit = r.limit // with add-ons, the script read the add-on limit
	d, err := decide(r.status, key, r.cost, r.used, r.retryAfterMs, r.resetMs, r.bucketMs, r.inFlight, call)
	d.Addon, d.Notices = r.addon, r.notices
	if d.Allowed && d.Cost > 0 { // a debit (as the memory store sets it)
		d.Day = r.day
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
		free = key.addonArgs()[0]
	}
	args := make([]any, 0, 6+2+len(s.refundStore))
	args = append(args, cost, strconv.FormatInt(bucket, 10), addon, day, call, msArg(now)) // the debit
	args = append(args, key.Rule, free)                                                    // the key
	args = append(args, s.refundStore...)                                                  // the store
	if err := refundScript.Run(ctx, s.client, key.redis().refund, args...).Err(); err != nil {
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

// msArg is t in unix ms for a script's now, or "" for the Redis server's clock when t is zero.
func msArg(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func forceArg(k Key) any {
	if k.Force {
		return "1"
	}
	return emptyArg
}
