package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/limiter"
)

// Breaker states, as exported by creditgate_breaker_state.
const (
	breakerClosed   int32 = iota // the store is used
	breakerHalfOpen              // the store answered a probe; the next call's result decides
	breakerOpen                  // the store is known dead: calls skip it and the fail mode applies
)

var breakerNames = [...]string{"closed", "half_open", "open"}

// errBreakerOpen is a call decided without the store because the breaker is open.
var errBreakerOpen = fmt.Errorf("%w (circuit breaker open)", errStoreUnavailable)

// breaker is the circuit breaker in front of the credit store. After Failures store calls
// in a row fail, it opens: calls no longer wait on the store, the fail mode answers at once.
// While open it probes the store every Cooldown (with Probe, in the background, so no call
// ever waits on a dead store; without Probe, one call per Cooldown goes through as the
// probe). A probe that succeeds half-opens it: calls use the store again, and the first
// result closes it or opens it again. Each change of state is logged once.
type breaker struct {
	failures int32
	cooldown time.Duration
	probe    func(context.Context) error
	timeout  time.Duration // bounds one probe
	log      *zap.Logger
	metrics  *Metrics
	onClose  func() // run (in a goroutine of its own) each time the breaker closes

	state     atomic.Int32
	failed    atomic.Int32  // store calls failed in a row
	oks       atomic.Uint64 // store calls that succeeded, ever: queued calls wait for the next
	nextProbe atomic.Int64  // unix ns after which a call may probe (no Probe func)

	mu       sync.Mutex // serializes changes of state, their log lines and the prober
	openedAt time.Time
	probing  bool
	stop     chan struct{}
	stopped  bool
}

func newBreaker(failures int, cooldown, timeout time.Duration, probe func(context.Context) error, log *zap.Logger, m *Metrics) *breaker {
	b := &breaker{
		failures: int32(failures),
		cooldown: cooldown,
		probe:    probe,
		timeout:  timeout,
		log:      log,
		metrics:  m,
		stop:     make(chan struct{}),
	}
	m.breakerSt.Set(float64(breakerClosed))
	return b
}

// allow reports whether a call may use the store now.
func (b *breaker) allow() bool {
	if b.state.Load() != breakerOpen {
		return true
	}
	if b.probe != nil {
		return false
	}
	next := b.nextProbe.Load()
	now := time.Now().UnixNano()
	return now >= next && b.nextProbe.CompareAndSwap(next, now+int64(b.cooldown))
}

// open reports whether the breaker is open (the store is being skipped).
func (b *breaker) open() bool { return b.state.Load() == breakerOpen }

// done records the result of a store call that was allowed: err is nil when the store
// decided (allowed or rejected), else the store's failure.
func (b *breaker) done(err error) {
	if err == nil {
		b.oks.Add(1)
		if b.failed.Load() != 0 {
			b.failed.Store(0)
		}
		if b.state.Load() != breakerClosed {
			b.set(breakerClosed, nil)
		}
		return
	}
	n := b.failed.Add(1)
	if n >= b.failures || b.state.Load() == breakerHalfOpen {
		b.set(breakerOpen, err)
	}
}

// set moves the breaker to state s (cause: the failure that opened it) and logs the change.
func (b *breaker) set(s int32, cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	prev := b.state.Load()
	if prev == s || (s == breakerHalfOpen && prev != breakerOpen) {
		return // half-open only from open: a late success may have closed it meanwhile
	}
	b.state.Store(s)
	b.metrics.breakerSt.Set(float64(s))
	b.metrics.breakerTr.WithLabelValues(breakerNames[s]).Inc()
	switch s {
	case breakerOpen:
		b.openedAt = time.Now()
		b.nextProbe.Store(b.openedAt.Add(b.cooldown).UnixNano())
		b.log.Error("credit store breaker opened: calls skip the store and the fail mode applies",
			zap.Int32("failures_in_a_row", b.failed.Load()), zap.Duration("probe_every", b.cooldown), zap.Error(cause))
		if b.probe != nil && !b.probing && !b.stopped {
			b.probing = true
			go b.probeLoop()
		}
	case breakerHalfOpen:
		b.log.Info("credit store breaker half-open: the store answered a probe", zap.Duration("open_for", time.Since(b.openedAt)))
	case breakerClosed:
		b.failed.Store(0)
		b.log.Info("credit store breaker closed: the store is in use again", zap.Duration("open_for", time.Since(b.openedAt)))
		if b.onClose != nil {
			go b.onClose()
		}
	}
}

// probeLoop probes the store every cooldown while the breaker is open.
func (b *breaker) probeLoop() {
	tick := time.NewTicker(b.cooldown)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			b.mu.Lock()
			b.probing = false
			b.mu.Unlock()
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		err := b.probe(ctx)
		cancel()
		b.mu.Lock()
		if err != nil && b.state.Load() == breakerOpen && !b.stopped {
			b.mu.Unlock()
			continue
		}
		b.probing = false
		b.mu.Unlock()
		if err == nil {
			b.set(breakerHalfOpen, nil)
		}
		return
	}
}

// close stops the prober; the breaker keeps answering allow.
func (b *breaker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.stopped {
		b.stopped = true
		close(b.stop)
	}
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
	d, err := g.cfg.Store.Spend(ctx, key, cost, now)
	cancel()
	g.settle(client, opSpend, start, err)
	return d, err
}

// spendCall counts a monthly plan's call behind the breaker, as spend debits credits: with
// Redis down it must not wait out a timeout on every call either.
func (g *Gateway) spendCall(client context.Context, ps limiter.PeriodStore, p limiter.PeriodKey, now time.Time) (limiter.PeriodDecision, error) {
	if !g.breaker.allow() {
		return limiter.PeriodDecision{}, errBreakerOpen
	}
	ctx, cancel := g.spendContext(client)
	start := time.Now()
	d, err := ps.SpendCall(ctx, p, now, true)
	cancel()
	g.settle(client, opPeriod, start, err)
	return d, err
}

// settle measures a deciding store call (op, begun at start) and reports it to the breaker.
func (g *Gateway) settle(client context.Context, op int, start time.Time, err error) {
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

// refund runs Store.Refund behind the breaker, with a context of its own (the client's
// may be gone already). A refund names its debit's call id and applies once, so one the
// store cannot take now is queued and retried (storeCall).
func (g *Gateway) refund(parent context.Context, key limiter.Key, d limiter.Decision) error {
	return g.storeCall(parent, opRefund, true, func(ctx context.Context) error { return g.cfg.Store.Refund(ctx, key, d) })
}

// refundLater queues the refund of d, to run within a second or when the breaker closes.
func (g *Gateway) refundLater(key limiter.Key, d limiter.Decision, local bool) {
	if local {
		_ = g.refundCall(context.Background(), key, d, true) // the ledger, or a compensation by id
		return
	}
	q := deferredCall{op: opRefund, retry: true, until: time.Now().Add(g.retryFor(opRefund)),
		call: func(ctx context.Context) error { return g.cfg.Store.Refund(ctx, key, d) }}
	if !g.pushFailed(q) {
		g.dropped(q, "queue_full")
	}
}

// compensate undoes the debit of call, whose Spend got no answer from the store: the script
// may have run (its reply lost), may still run (it waits on the store's socket), or never
// will. Queued and retried until the store answers (storeCall).
func (g *Gateway) compensate(key limiter.Key, call string) {
	c, ok := g.cfg.Store.(compensator)
	if !ok || call == "" {
		return
	}
	g.metrics.compensations.Inc()
	// Queued, not run now: the store just failed this call, and would likely fail the next
	// too (and count twice towards opening the breaker). The queue runs within a second, or
	// when the breaker closes.
	d := deferredCall{op: opCompensate, retry: true, until: time.Now().Add(g.retryFor(opCompensate)),
		call: func(ctx context.Context) error {
			var now time.Time
			if g.cfg.Clock != nil {
				now = g.cfg.Clock()
			}
			return c.Compensate(ctx, key, call, now)
		}}
	if !g.pushFailed(d) {
		g.dropped(d, "queue_full")
	}
}

// release runs Store.Release behind the breaker; with it open, or failing, it is queued and
// retried (storeCall), and the lease expires after its TTL at the latest.
func (g *Gateway) releaseLease(parent context.Context, key limiter.Key, d limiter.Decision) error {
	return g.storeCall(parent, opRelease, true, func(ctx context.Context) error { return g.cfg.Store.Release(ctx, key, d) })
}

// storeCall runs a store call that must not be lost (a refund, a compensation, a release)
// behind the breaker. One the breaker keeps from the store now waits in a queue; so does one
// that fails, when retry says running it again is safe (it applies once). The queue runs when
// the breaker closes and every second while it holds calls. It returns an error only when the
// call failed and was not queued, or the queue was full (errBreakerOpen).
func (g *Gateway) storeCall(parent context.Context, op int, retry bool, call func(context.Context) error) error {
	return g.runStoreCall(parent, deferredCall{op: op, retry: retry, call: call, until: time.Now().Add(g.retryFor(op))})
}

func (g *Gateway) runStoreCall(parent context.Context, d deferredCall) error {
	if !g.breaker.allow() {
		if !g.queue(d) {
			return errBreakerOpen
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), g.cfg.StoreTimeout)
	start := time.Now()
	err := d.call(ctx)
	cancel()
	if err != nil {
		g.metrics.observeStore(d.op, resultError, start)
	} else {
		g.metrics.observeStore(d.op, resultOK, start)
	}
	g.breaker.done(err)
	if err != nil && d.retry {
		if g.pushFailed(d) {
			return nil
		}
		g.dropped(d, "queue_full")
	}
	return err
}

// retryFor is how long a queued store call of op is worth retrying: a lease expires on its
// own after its TTL, and a debit's record (what a refund or compensation needs to apply
// once) after the call TTL.
func (g *Gateway) retryFor(op int) time.Duration {
	if op == opRelease && g.cfg.LeaseTTL > 0 {
		return g.cfg.LeaseTTL
	}
	return g.cfg.CallTTL
}

// deferredCall is a store call waiting to be run (again).
type deferredCall struct {
	op    int
	retry bool // safe to run again after a failure: it applies once
	call  func(context.Context) error
	until time.Time // past it, the call is dropped: too late to apply
	// failed: queued after a failure, when the store had answered oks calls, at at. It runs
	// again once the store has answered another call since, or retryIdle later, so a hung
	// store is not called again and again.
	failed bool
	oks    uint64
	at     time.Time
}

// retryIdle is how long a queued call waits for the store to answer another before it is
// tried again anyway (no traffic to tell that the store is back).
const retryIdle = 5 * time.Second

// maxDeferred bounds the store calls waiting: beyond it, leases are left to expire and
// refunds and compensations are lost (counted in creditgate_store_calls_dropped_total, and
// logged).
const maxDeferred = 4096

// queue adds d to the calls waiting for the breaker to close, and reports whether there was
// room.
func (g *Gateway) queue(d deferredCall) bool {
	if !g.push(d) {
		g.dropped(d, "queue_full")
		return false
	}
	if g.breaker.state.Load() == breakerClosed {
		// It closed meanwhile, maybe after its run of the queue began: run it now.
		go g.runDeferred()
	}
	return true
}

// pushFailed queues d after the store failed it (or the debit it undoes): it runs again once
// the store has answered another call, or retryIdle later.
func (g *Gateway) pushFailed(d deferredCall) bool {
	d.failed, d.oks, d.at = true, g.breaker.oks.Load(), time.Now()
	return g.push(d)
}

// push adds d to the queue without starting a run, and reports whether there was room.
func (g *Gateway) push(d deferredCall) bool {
	select {
	case g.deferred <- d:
		g.metrics.deferredLen.Set(float64(len(g.deferred)))
		return true
	default:
		return false
	}
}

// dropped counts and logs a store call given up on.
func (g *Gateway) dropped(d deferredCall, why string) {
	g.metrics.droppedCalls.WithLabelValues(storeOpNames[d.op], why).Inc()
	g.log.Warn("store call dropped", zap.String("op", storeOpNames[d.op]), zap.String("reason", why))
}

// runDeferred runs the store calls that waited, each behind the breaker again: one that finds
// it open, or fails and may be retried, waits again, until its time is up.
func (g *Gateway) runDeferred() {
	for range len(g.deferred) {
		var d deferredCall
		select {
		case d = <-g.deferred:
		default:
			return
		}
		g.metrics.deferredLen.Set(float64(len(g.deferred)))
		if time.Now().After(d.until) {
			g.dropped(d, "expired")
			continue
		}
		if d.failed && g.breaker.oks.Load() == d.oks && time.Since(d.at) < retryIdle {
			// The store has not answered anything since: wait, keeping the item's place.
			select {
			case g.deferred <- d:
			default:
				g.dropped(d, "queue_full")
			}
			continue
		}
		if err := g.runStoreCall(context.Background(), d); err != nil && err != errBreakerOpen {
			g.log.Warn("deferred store call failed", zap.String("op", storeOpNames[d.op]), zap.Error(err))
		}
	}
}

// retryLoop runs the queue every second while it holds calls and the breaker lets calls
// through, so a call that failed is retried even when the breaker never opened.
func (g *Gateway) retryLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			if len(g.deferred) > 0 && !g.breaker.open() {
				g.runDeferred()
			}
			if g.local != nil && g.local.pending() > 0 && !g.breaker.open() {
				g.reconcile()
			}
		}
	}
}

// Close stops the gateway's background work (the breaker's prober, the lease renewals) and
// closes the upstream connections of the transports it built, each once its calls are done.
// Calls still in flight are not affected.
func (g *Gateway) Close() {
	g.stopOnce.Do(func() { close(g.stop) })
	g.breaker.close()
	if g.leases != nil {
		g.leases.close()
	}
	g.routesMu.Lock()
	for _, t := range g.transports {
		t.Close()
	}
	g.routesMu.Unlock()
}

// Drain marks the gateway as shutting down: /readyz answers 503 so load balancers stop
// sending calls, while calls keep being served.
func (g *Gateway) Drain() { g.draining.Store(true) }

// BreakerOpen reports whether the credit store's breaker is open: calls skip the store and
// the fail mode answers them.
func (g *Gateway) BreakerOpen() bool { return g.breaker.open() }

// compensator is what the gateway needs of a store to undo debits whose reply was lost.
type compensator interface {
	Compensate(ctx context.Context, key limiter.Key, call string, now time.Time) error
}
