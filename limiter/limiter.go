package limiter

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Outcomes that callers branch on. The details (retry-after, remaining) ride on Decision.
var (
	// ErrOverLimit means the window holds too few free credits for this cost right now;
	// Decision.RetryAfter says when enough will be free.
	ErrOverLimit = errors.New("credits exhausted for the window")
	// ErrCostExceedsLimit means the cost is larger than the whole limit: the call can never
	// succeed, however long the caller waits.
	ErrCostExceedsLimit = errors.New("cost exceeds the whole limit")
)

// Store debits credits from rolling windows. Both implementations (RedisStore,
// MemoryStore) pass the same conformance suite (package storetest).
type Store interface {
	// Spend debits cost credits from key's window at time now, or rejects the call and writes
	// nothing. A zero now means the store's own clock (the Redis server's TIME, or the local
	// clock for MemoryStore). A cost of 0 only reads the window.
	//
	// When the call is rejected the error is ErrOverLimit or ErrCostExceedsLimit and the
	// Decision is still filled in; any other error means the store could not decide.
	Spend(ctx context.Context, key Key, cost int64, now time.Time) (Decision, error)
	// Refund gives back the credits of an allowed Decision (e.g. the upstream was never
	// reached). Credits whose bucket has expired meanwhile are free already.
	Refund(ctx context.Context, key Key, d Decision) error
}

// Key names one org's window and its size. Build it with NewKey, once per org, so the
// request path does not build strings.
type Key struct {
	// Org is the organization ID; it must not contain '{' or '}' (it is the Redis hash tag).
	Org string
	// Limit is the credits allowed per window.
	Limit int64

	redisKeys []string // sorted set, hash, total; all tagged {Org}
}

// NewKey returns the Key of org with the given limit.
func NewKey(org string, limit int64) Key {
	return Key{Org: org, Limit: limit, redisKeys: redisKeysFor(org)}
}

// WithLimit returns k with another limit, keeping its prebuilt Redis key names.
func (k Key) WithLimit(limit int64) Key {
	k.Limit = limit
	return k
}

func redisKeysFor(org string) []string {
	prefix := "cg:{" + org + "}:"
	return []string{prefix + "win", prefix + "cred", prefix + "total"}
}

// Decision is the result of Spend. It is a value so the request path does not allocate.
type Decision struct {
	// Allowed reports whether the cost was debited.
	Allowed bool
	// Cost is the credits debited: the requested cost when allowed, 0 when rejected.
	Cost int64
	// Limit is the credits allowed per window.
	Limit int64
	// Used is the credits held by the window after this call.
	Used int64
	// Remaining is Limit-Used, never negative.
	Remaining int64
	// RetryAfter is, for a call rejected with ErrOverLimit, the exact wait until enough
	// credits free up for this cost. Zero otherwise.
	RetryAfter time.Duration
	// Reset is the wait until the oldest credits held by the window free up; zero when the
	// window holds nothing.
	Reset time.Duration
	// Bucket is the start (unix ms) of the bucket an allowed debit landed in; Refund uses it.
	Bucket int64
}

// Options sets the window of a store.
type Options struct {
	// Window is how long a consumed credit stays consumed (default 24h).
	Window time.Duration
	// Bucket is the granularity of consumption records (default Window/1440, at least 1ms):
	// a credit frees up between Window and Window+Bucket after it was consumed, and a window
	// holds at most Window/Bucket+1 buckets whatever the request rate.
	Bucket time.Duration
}

// DefaultBucket returns the bucket used for window when none is configured: window/1440
// (one minute for 24 hours), truncated to whole milliseconds and at least 1ms.
func DefaultBucket(window time.Duration) time.Duration {
	b := (window / 1440).Truncate(time.Millisecond)
	if b < time.Millisecond {
		b = time.Millisecond
	}
	return b
}

func (o Options) withDefaults() (Options, error) {
	if o.Window == 0 {
		o.Window = 24 * time.Hour
	}
	if o.Bucket == 0 {
		o.Bucket = DefaultBucket(o.Window)
	}
	switch {
	case o.Window < time.Millisecond || o.Window%time.Millisecond != 0:
		return o, fmt.Errorf("window must be a positive whole number of milliseconds, got %s", o.Window)
	case o.Bucket < time.Millisecond || o.Bucket%time.Millisecond != 0:
		return o, fmt.Errorf("bucket must be a positive whole number of milliseconds, got %s", o.Bucket)
	case o.Bucket > o.Window:
		return o, fmt.Errorf("bucket %s is longer than the window %s", o.Bucket, o.Window)
	}
	return o, nil
}

// decide fills in a Decision from a window's state, the same way in both stores.
// status: 1 allowed, 0 over limit, -1 cost exceeds limit.
func decide(status, cost, limit, used, retryMs, resetMs, bucket int64) (Decision, error) {
	d := Decision{
		Allowed:    status == 1,
		Limit:      limit,
		Used:       used,
		Remaining:  max(limit-used, 0),
		RetryAfter: time.Duration(retryMs) * time.Millisecond,
		Reset:      time.Duration(resetMs) * time.Millisecond,
		Bucket:     bucket,
	}
	switch status {
	case 1:
		d.Cost = cost
		return d, nil
	case 0:
		return d, ErrOverLimit
	default:
		return d, ErrCostExceedsLimit
	}
}

func checkCost(key Key, cost int64) error {
	if cost < 0 {
		return fmt.Errorf("spend %s: negative cost %d", key.Org, cost)
	}
	return nil
}
