package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

// Store is everything the gateway asks of its credit store, declared here, where it is used.
// limiter.RedisStore, limiter.PipelinedStore and limiter.MemoryStore implement all of it, with
// the semantics package limiter documents for each method. A store that cannot do some of it
// says so in Config.StoreLacks: the gateway then never calls those methods (they may do
// anything, say return an error), and does without as each StoreFeature says.
type Store interface {
	// Spend, Refund and Release are the window (limiter.Store): a call's debit, its refund
	// when the upstream never served it, and the end of its concurrency lease. Every store
	// has them.
	Spend(ctx context.Context, key limiter.Key, cost int64, now time.Time) (limiter.Decision, error)
	Refund(ctx context.Context, key limiter.Key, d limiter.Decision) error
	Release(ctx context.Context, key limiter.Key, d limiter.Decision) error

	// Compensate undoes the debit of a call whose reply was lost (limiter.Compensator;
	// StoreCompensate).
	Compensate(ctx context.Context, key limiter.Key, call string, now time.Time) error
	// Renew extends the leases of calls in flight, returning how many were still held
	// (limiter.LeaseRenewer; StoreRenew).
	Renew(ctx context.Context, key limiter.Key, leases []string, now time.Time) (int64, error)
	// Heartbeat says this gateway is alive and returns how many are (limiter.Heartbeater;
	// StoreHeartbeat).
	Heartbeat(ctx context.Context, id string, ttl time.Duration) (int64, error)
	// Usage reads a window without debiting it (limiter.UsageReader; StoreUsage).
	Usage(ctx context.Context, key limiter.Key, now time.Time) (limiter.Usage, error)
	// SpendCall and RefundCall count and take back the calls of monthly plans
	// (limiter.PeriodStore; StorePeriods).
	SpendCall(ctx context.Context, k limiter.PeriodKey, now time.Time, count bool) (limiter.PeriodDecision, error)
	RefundCall(ctx context.Context, k limiter.PeriodKey, d limiter.PeriodDecision) error
	// SetAddon and Metered keep add-on limits set at run time and the add-on credits consumed
	// per day (limiter.Meter; StoreBilling).
	SetAddon(ctx context.Context, org string, limit int64) error
	Metered(ctx context.Context, org string, from, to int64) (map[int64]int64, error)
	// SetNotices, Notices, QueueNotices, SweepNotices, ClaimNotices and FinishNotices keep
	// usage notices: settings set at run time, fired thresholds, the outbox
	// (limiter.NoticeStore; StoreNotices).
	SetNotices(ctx context.Context, org string, s *limiter.NoticeSettings) error
	Notices(ctx context.Context, org string) (limiter.NoticeState, error)
	QueueNotices(ctx context.Context, org string, now time.Time) error
	SweepNotices(ctx context.Context, now time.Time) error
	ClaimNotices(ctx context.Context, owner string, now time.Time, lease time.Duration, maxOrgs, perOrg int) ([]limiter.Notice, error)
	FinishNotices(ctx context.Context, owner, org string, done []limiter.Notice, failed *limiter.Notice, retryAt, now time.Time) error
	// Settle corrects a call's debit to the cost its answer settled on (limiter.Settler;
	// StoreSettle).
	Settle(ctx context.Context, key limiter.Key, d limiter.Decision, cost int64, now time.Time) (limiter.Settlement, error)
}

// StoreFeature is a part of Store beyond the window, which a store may lack (see
// Config.StoreLacks). Features combine with |.
type StoreFeature uint8

const (
	// StoreCompensate is Compensate. Without it, a debit whose reply was lost stays charged.
	StoreCompensate StoreFeature = 1 << iota
	// StoreRenew is Renew. Without it, leases are not renewed: they last Config.LeaseTTL.
	StoreRenew
	// StoreHeartbeat is Heartbeat. Without it, fail mode local counts this gateway alone.
	StoreHeartbeat
	// StoreUsage is Usage. Without it, the usage API and page answer 501 NOT_SUPPORTED.
	StoreUsage
	// StorePeriods is SpendCall and RefundCall. Without them, a monthly plan's calls find the
	// store unable to decide (the fail mode applies), and its usage answers 501.
	StorePeriods
	// StoreBilling is SetAddon and Metered. Without them, the add-on and billing endpoints
	// answer 501 NOT_SUPPORTED.
	StoreBilling
	// StoreNotices is the usage notices' methods. Without them, no notices are queued or
	// sent, and the notices endpoints answer 501 NOT_SUPPORTED.
	StoreNotices
	// StoreSettle is Settle. Without it, calls of rules that settle from the response keep
	// the reserved cost, and their responses are not read.
	StoreSettle
)

// has reports whether the store has feature f: Config.StoreLacks does not name it.
func (g *Gateway) has(f StoreFeature) bool { return g.cfg.StoreLacks&f == 0 }

// errNoPeriods is what a store without StorePeriods answers a monthly plan's call.
var errNoPeriods = errors.New("the credit store does not count monthly plans")

// decisionTime is the time of a decision by the gateway's clock, or zero without one: the
// store then uses its own.
func (g *Gateway) decisionTime() time.Time {
	if g.cfg.Clock != nil {
		return g.cfg.Clock()
	}
	return time.Time{}
}

// storeFailed reports whether err from a store call is a failure of the store (as opposed
// to one of its decisions: over limit, cost too high, concurrency cap, period used up).
func storeFailed(err error) bool {
	return err != nil && !errors.Is(err, limiter.ErrOverLimit) && !errors.Is(err, limiter.ErrCostExceedsLimit) &&
		!errors.Is(err, limiter.ErrConcurrency) && !errors.Is(err, limiter.ErrPeriodExhausted) &&
		!errors.Is(err, limiter.ErrCompensated)
}

// spend runs Store.Spend behind the breaker and measures it. client is the caller's own
// context: a failure seen after the client left is not held against the store.
func (g *Gateway) spend(client context.Context, key limiter.Key, cost int64, now time.Time) (limiter.Decision, error) {
	if !g.breaker.allow() {
		return limiter.Decision{}, errBreakerOpen
	}
	ctx, cancel := g.spendContext(client)
	start := time.Now()
	d, err := g.spendIn(ctx, key, cost, now)
	cancel()
	g.observeDecision(client, opSpend, start, err)
	return d, err
}

// spendCall counts a monthly plan's call behind the breaker, as spend debits credits: with
// Redis down it must not wait out a timeout on every call either.
func (g *Gateway) spendCall(client context.Context, p limiter.PeriodKey, now time.Time) (limiter.PeriodDecision, error) {
	if !g.has(StorePeriods) {
		return limiter.PeriodDecision{}, errNoPeriods
	}
	if !g.breaker.allow() {
		return limiter.PeriodDecision{}, errBreakerOpen
	}
	ctx, cancel := g.spendContext(client)
	start := time.Now()
	d, err := g.cfg.Store.SpendCall(ctx, p, now, true)
	cancel()
	g.observeDecision(client, opPeriod, start, err)
	return d, err
}

// observeDecision measures a deciding store call (op, begun at start) and reports it to the
// breaker.
func (g *Gateway) observeDecision(client context.Context, op int, start time.Time, err error) {
	switch {
	case err == nil:
		g.metrics.observeStore(op, resultOK, start)
		g.breaker.done(nil)
	case !storeFailed(err):
		g.metrics.observeStore(op, resultRejected, start)
		g.breaker.done(nil)
	case client.Err() != nil:
		// The client left: its cancellation, not the store's failure.
		g.metrics.storeOps[op][resultError].Observe(time.Since(start).Seconds())
	default:
		g.metrics.observeStore(op, resultError, start)
		g.breaker.done(err)
	}
}

// noCancel is the cancel func of a context that has none.
func noCancel() {}

// spendContext bounds a Spend by StoreTimeout. A store in the process never waits, so its
// calls skip the timer (four allocations and a timer-heap update per call).
func (g *Gateway) spendContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if g.cfg.StoreInProcess {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, g.cfg.StoreTimeout)
}

// refund runs Store.Refund behind the breaker, with a context of its own (the client's
// may be gone already). A refund names its debit's call id and applies once, so one the
// store cannot take now is queued and retried (storeCall).
func (g *Gateway) refund(parent context.Context, key limiter.Key, d limiter.Decision) error {
	return g.storeCall(parent, opRefund, true, func(ctx context.Context) error { return g.cfg.Store.Refund(ctx, key, d) })
}

// settleStore runs Store.Settle behind the breaker, with a context of its own (the client's
// may be gone already). A settle names its debit's call id and applies once, so one the store
// cannot take now is queued and retried (storeCall); ran reports whether it ran now, and set
// is then what it did.
func (g *Gateway) settleStore(parent context.Context, key limiter.Key, d limiter.Decision, cost int64) (set limiter.Settlement, ran bool, err error) {
	err = g.storeCall(parent, opSettle, true, func(ctx context.Context) error {
		s, err := g.settleIn(ctx, key, d, cost, g.decisionTime())
		if err == nil {
			set, ran = s, true
		}
		return err
	})
	return set, ran, err
}

// spendIn is Store.Spend, with the usage notices the debit queued handed to the notifier.
func (g *Gateway) spendIn(ctx context.Context, key limiter.Key, cost int64, now time.Time) (limiter.Decision, error) {
	d, err := g.cfg.Store.Spend(ctx, key, cost, now)
	if d.Notices > 0 && g.notices != nil {
		g.notices.queued(key.Org, d.Notices)
	}
	return d, err
}

// settleIn is Store.Settle, with the usage notices it queued handed to the notifier (an extra
// debit can cross a threshold, as a Spend can).
func (g *Gateway) settleIn(ctx context.Context, key limiter.Key, d limiter.Decision, cost int64, now time.Time) (limiter.Settlement, error) {
	s, err := g.cfg.Store.Settle(ctx, key, d, cost, now)
	if err == nil && s.Notices > 0 && g.notices != nil {
		g.notices.queued(key.Org, s.Notices)
	}
	return s, err
}

// refundLater queues the refund of d, to run within a second or when the breaker closes.
func (g *Gateway) refundLater(key limiter.Key, d limiter.Decision, local bool) {
	if local {
		_ = g.refundCall(context.Background(), key, d, true) // the ledger, or a compensation by id
		return
	}
	g.queueFailed(g.deferredCall(opRefund, true, func(ctx context.Context) error { return g.cfg.Store.Refund(ctx, key, d) }))
}

// compensate undoes the debit of call, whose Spend got no answer from the store: the script
// may have run (its reply lost), may still run (it waits on the store's socket), or never
// will. Queued and retried until the store answers (storeCall).
func (g *Gateway) compensate(key limiter.Key, call string) {
	if !g.has(StoreCompensate) || call == "" {
		return
	}
	g.metrics.compensations.Inc()
	// Queued, not run now: the store just failed this call, and would likely fail the next
	// too (and count twice towards opening the breaker). The queue runs within a second, or
	// when the breaker closes.
	g.queueFailed(g.deferredCall(opCompensate, true, func(ctx context.Context) error {
		return g.cfg.Store.Compensate(ctx, key, call, g.decisionTime())
	}))
}

// releaseLease runs Store.Release behind the breaker; with it open, or failing, it is queued
// and retried (storeCall), and the lease expires after its TTL at the latest.
func (g *Gateway) releaseLease(parent context.Context, key limiter.Key, d limiter.Decision) error {
	return g.storeCall(parent, opRelease, true, func(ctx context.Context) error { return g.cfg.Store.Release(ctx, key, d) })
}

// refundPeriodCall takes back a monthly plan's counted call behind the breaker. Not retried
// after a failure: taking a call back twice would take back two.
func (g *Gateway) refundPeriodCall(parent context.Context, p limiter.PeriodKey, d limiter.PeriodDecision) error {
	return g.storeCall(parent, opRefund, false, func(ctx context.Context) error { return g.cfg.Store.RefundCall(ctx, p, d) })
}

// decide debits cost for t through the store or, when the store cannot decide and the fail
// mode is local, on the gateway's own; local reports which. A decision of the store is also
// what t has left, for its share in a later outage. A debit the store did not answer is
// compensated, unless the call goes on locally under the same call id.
func (g *Gateway) decide(client context.Context, t *orgState, key limiter.Key, cost int64, now time.Time) (limiter.Decision, bool, error) {
	d, err := g.spend(client, key, cost, now)
	if !storeFailed(err) {
		if g.local != nil {
			t.remaining.Store(d.Remaining)
		}
		return d, false, err
	}
	if g.local != nil && !g.cfg.Shadow && client.Err() == nil {
		ld, lerr := g.local.spend(t, key, d.Call, cost, now, max(g.cfg.BreakerCooldown, time.Second))
		if lerr == nil || errors.Is(lerr, limiter.ErrOverLimit) {
			if lerr != nil || !ld.Allowed {
				g.compensate(key, d.Call) // refused here: the store's debit, if it ran, is undone
			} else {
				g.metrics.localAdmitted.Inc()
			}
			g.metrics.localLedger.Set(float64(g.local.pending()))
			ld.Limit = t.key.Limit // the fields show the org's limit, and what is left of the share
			return ld, true, lerr
		}
		// The ledger is full: as fail mode closed.
	}
	// No answer: the debit may have run, or may still run. Undo it either way; the call goes
	// on uncharged (failing open) or is refused.
	g.compensate(key, d.Call)
	return d, false, err
}

// refundCall gives back a debit of a call that was not served: on the gateway's own ledger
// if it never left it, else in the store (by its call id).
func (g *Gateway) refundCall(ctx context.Context, key limiter.Key, d limiter.Decision, local bool) error {
	if !local {
		return g.refund(ctx, key, d)
	}
	done := g.local.refund(d.Call)
	g.metrics.localLedger.Set(float64(g.local.pending()))
	if !done {
		g.compensate(key, d.Call) // written, or maybe written: undone in the store by its id
	}
	return nil
}
