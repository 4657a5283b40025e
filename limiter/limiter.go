package limiter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
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
	// ErrConcurrency means the org already has as many calls in flight as its cap allows
	// (Decision.ConcurrencyLimit says which cap); nothing was debited.
	ErrConcurrency = errors.New("too many calls in flight")
	// ErrCompensated means the call was compensated (Compensator) or refunded before this
	// debit of it ran: nothing was debited. Its caller has given up on it by then. (A Spend
	// resent for a call whose debit ran and stands is not refused: it answers that debit.)
	ErrCompensated = errors.New("call compensated before its debit")
)

// Compensator undoes debits whose outcome the caller never learned (the reply was lost):
// RedisStore, PipelinedStore and MemoryStore implement it.
type Compensator interface {
	// Compensate gives back the debit of call if it ran and was not refunded yet, and
	// otherwise marks call so that its debit, if it still comes, does nothing (Spend answers
	// ErrCompensated). It applies once whatever the retries, within Options.CallTTL. The
	// call's concurrency lease, if it took one, is released.
	Compensate(ctx context.Context, key Key, call string, now time.Time) error
}

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
	// Release ends the concurrency lease of an allowed Decision, when the call is over. A
	// lease that is never released (the replica died) expires after Options.LeaseTTL.
	Release(ctx context.Context, key Key, d Decision) error
}

// Key names one org's window and its size. Build it with NewKey, once per org, so the
// request path does not build strings.
type Key struct {
	// Org is the organization ID; it must not contain '{' or '}' (it is the Redis hash tag).
	Org string
	// Limit is the credits allowed per window.
	Limit int64
	// Concurrency caps the org's calls in flight; 0 means no cap. With a cap, an allowed
	// Spend holds a lease (Decision.Lease) until Release.
	Concurrency int64
	// HeavyConcurrency, when above 0 (and Concurrency too), marks this call heavy: it also
	// takes one of the org's HeavyConcurrency slots for heavy calls.
	HeavyConcurrency int64
	// Free, Addon and AddonCap are the add-on credits set by WithAddons: the limit is Free
	// plus the org's add-on limit held by the store, or Addon while the store holds none, at
	// most AddonCap, and the part of each debit above Free is metered for billing. Without
	// WithAddons, Limit applies as is.
	Free, Addon, AddonCap int64
	// Rule names the cost-table rule that priced this call; an allowed Spend records its
	// credits under it for per-rule usage (see UsageReader). Empty records nothing.
	Rule string
	// Call identifies this call's debit (see Decision.Call); empty: Spend makes one up. A
	// Spend is idempotent by its Call, for Options.CallTTL: sent again (a retry whose first
	// attempt's reply was lost), it debits nothing more and answers as the debit that ran
	// did: allowed, the same cost and bucket, its lease still the one held.
	Call string
	// Force records the debit whatever the limit and the concurrency caps (no lease is
	// taken): credits admitted while the store could not decide, written afterwards. With a
	// Call known to the store already (debited, refunded or compensated), it does nothing
	// and answers ErrCompensated, never a replay of the earlier debit: it applies once.
	Force bool

	// Thresholds are the percents of the limit whose crossing queues a usage notice (see
	// WithNotices), unless the store holds the org's own (NoticeStore.SetNotices).
	Thresholds []int64

	redisKeys *RedisKeys // built by NewKey, so the request path builds no key names
	addonArgv []any      // Free, Addon and AddonCap formatted (and boxed, so Spend does not allocate) for the scripts; nil without add-ons
	notices   any        // Thresholds formatted for spend.lua, boxed; nil: none
	limitArg  any        // Limit boxed once, for the scripts (limitValue): an org's key is built once, its calls copy it
}

// NewKey returns the Key of org with the given limit, and no concurrency cap.
func NewKey(org string, limit int64) Key {
	return Key{Org: org, Limit: limit, redisKeys: NewRedisKeys(org), limitArg: limit}
}

// limitValue is Limit as a script argument: boxed when the key was built, unless Limit was
// set since.
func (k Key) limitValue() any {
	if v, ok := k.limitArg.(int64); ok && v == k.Limit {
		return k.limitArg
	}
	return k.Limit
}

// WithConcurrency returns k with concurrency caps: calls in flight at most concurrency, and,
// when heavy is above 0, heavy calls (as this one) at most heavy.
func (k Key) WithConcurrency(concurrency, heavy int64) Key {
	k.Concurrency, k.HeavyConcurrency = concurrency, heavy
	return k
}

// WithCall returns k for the call identified by call (unique across replicas and restarts
// for as long as Options.CallTTL; NewCallID makes such ids).
func (k Key) WithCall(call string) Key {
	k.Call = call
	return k
}

// WithForce returns k for a debit recorded whatever the limit and caps (see Key.Force).
func (k Key) WithForce() Key {
	k.Force, k.Concurrency, k.HeavyConcurrency = true, 0, 0
	return k
}

// WithRule returns k for a call priced by the cost-table rule named rule.
func (k Key) WithRule(rule string) Key {
	k.Rule = rule
	return k
}

// WithLimit returns k with another limit, keeping its prebuilt Redis key names.
func (k Key) WithLimit(limit int64) Key {
	k.Limit, k.limitArg = limit, limit
	return k
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
	// Lease identifies the concurrency lease an allowed call holds until Release; empty
	// without a cap.
	Lease string
	// InFlight is the calls in flight under the cap that applied (this one included when
	// allowed), and ConcurrencyLimit that cap; both 0 without a cap. A call refused with
	// ErrConcurrency names the cap it hit: the heavy one or the org's.
	InFlight, ConcurrencyLimit int64
	// Addon is, for an allowed debit of an org with add-ons, the part of Cost above the free
	// allotment: add-on credits, metered for billing on Day. Refund un-meters it.
	Addon int64
	// Day is the UTC day (days since 1970-01-01, see limiter.Day) of an allowed debit, on the
	// store's clock: the day its add-on credits are metered on. (Not the day of Bucket: a
	// bucket that does not divide a day can start before midnight.)
	Day int64
	// Call identifies the debit of a Spend with a cost, whatever its outcome, even when the
	// store could not decide: Refund and Compensator.Compensate name it. It is also the
	// lease id when there is a lease.
	Call string
	// Notices is how many usage notices this Spend queued in the store's outbox (see
	// NoticeStore): thresholds its debit made usage reach.
	Notices int64
}

// Options sets the window of a store.
type Options struct {
	// Window is how long a consumed credit stays consumed (default 24h).
	Window time.Duration
	// Bucket is the granularity of consumption records (default Window/1440, at least 1ms):
	// a credit frees up between Window and Window+Bucket after it was consumed, and a window
	// holds at most Window/Bucket+1 buckets whatever the request rate.
	Bucket time.Duration
	// LeaseTTL is how long a concurrency lease lasts if it is never released (default 2m):
	// longer than any call, short enough that a dead replica's slots come back soon.
	LeaseTTL time.Duration
	// CallTTL is how long the store keeps the record of a debit (what Refund and Compensate
	// need to apply once), and the mark of a call compensated before its debit ran (default
	// 2m). A compensation later than that is not applied.
	CallTTL time.Duration
}

// ringSlots returns how many buckets of bucket ms a window of window ms spans at most,
// ceil(window/bucket)+1: the counters of RedisStore's ring, and the span MemoryStore keeps
// when a clock runs back.
func ringSlots(window, bucket int64) int64 { return (window+bucket-1)/bucket + 1 }

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
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 2 * time.Minute
	}
	if o.CallTTL == 0 {
		o.CallTTL = 2 * time.Minute
	}
	switch {
	case o.Window < time.Millisecond || o.Window%time.Millisecond != 0:
		return o, fmt.Errorf("window must be a positive whole number of milliseconds, got %s", o.Window)
	case o.Bucket < time.Millisecond || o.Bucket%time.Millisecond != 0:
		return o, fmt.Errorf("bucket must be a positive whole number of milliseconds, got %s", o.Bucket)
	case o.Bucket > o.Window:
		return o, fmt.Errorf("bucket %s is longer than the window %s", o.Bucket, o.Window)
	case o.LeaseTTL < time.Millisecond:
		return o, fmt.Errorf("lease TTL must be at least 1ms, got %s", o.LeaseTTL)
	case o.CallTTL < time.Millisecond:
		return o, fmt.Errorf("call TTL must be at least 1ms, got %s", o.CallTTL)
	}
	return o, nil
}

// The statuses spend.lua answers (its header says what each means), by name. MemoryStore
// decides with the same ones, so both stores fill in a Decision through decide.
const (
	statusAllowed          = 1  // debited
	statusOverLimit        = 0  // not enough credits free
	statusCostExceedsLimit = -1 // cost above the whole limit
	statusConcurrency      = -2 // the org's cap of calls in flight
	statusHeavy            = -3 // the cap of heavy calls in flight
	statusCompensated      = -4 // the call was compensated or refunded before: nothing done
	statusReplayed         = -5 // the call's debit ran already (a resend): answered as it was
)

// decide fills in a Decision from a window's state, the same way in both stores.
//
// call is the debit's call id (also its lease id, with a cap). For statusReplayed, cost is
// the debit's as recorded, and the Decision is the allowed one of that debit with the window
// as it stands now: nothing more was debited, and the lease is the one the debit took.
func decide(status int64, key Key, cost, used, retryMs, resetMs, bucket, inFlight int64, call string) (Decision, error) {
	d := Decision{
		Allowed:    status == statusAllowed || status == statusReplayed,
		Limit:      key.Limit,
		Used:       used,
		Remaining:  max(key.Limit-used, 0),
		RetryAfter: time.Duration(retryMs) * time.Millisecond,
		Reset:      time.Duration(resetMs) * time.Millisecond,
		Bucket:     bucket,
		Call:       call,
	}
	switch status {
	case statusAllowed, statusReplayed:
		d.Cost = cost
		if key.Concurrency > 0 && cost > 0 {
			d.Lease, d.InFlight, d.ConcurrencyLimit = call, inFlight, key.Concurrency
		}
		return d, nil
	case statusOverLimit:
		return d, ErrOverLimit
	case statusConcurrency:
		d.InFlight, d.ConcurrencyLimit = inFlight, key.Concurrency
		return d, ErrConcurrency
	case statusHeavy:
		d.InFlight, d.ConcurrencyLimit = inFlight, key.HeavyConcurrency
		return d, ErrConcurrency
	case statusCompensated:
		return d, ErrCompensated
	default:
		return d, ErrCostExceedsLimit
	}
}

// leasePrefix makes lease ids unique across processes; leaseSeq within one.
var (
	leasePrefix = func() string {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			panic("limiter: no randomness for lease ids: " + err.Error())
		}
		return hex.EncodeToString(b[:]) + "-"
	}()
	leaseSeq atomic.Uint64
)

func newLeaseID() string {
	var buf [48]byte // one allocation: the string
	return string(strconv.AppendUint(append(buf[:0], leasePrefix...), leaseSeq.Add(1), 36))
}

// NewCallID returns an id for a call's debit, unique across processes.
func NewCallID() string { return newLeaseID() }

// callID is key's call id for a debit of cost, made up when the caller named none.
func callID(key Key, cost int64) string {
	if key.Call != "" || cost <= 0 {
		return key.Call
	}
	return newLeaseID()
}

func checkCost(key Key, cost int64) error {
	if cost < 0 {
		return fmt.Errorf("spend %s: negative cost %d", key.Org, cost)
	}
	return nil
}
