package gateway

import (
	"context"
	"time"

	"go.uber.org/zap"
)

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

// deferredQueue holds the store calls that must not be lost (refunds, compensations,
// releases) while the store cannot take them: the breaker is open, or the store failed them
// and running them again is safe. Its clock (now) dates the calls and their deadlines.
type deferredQueue struct {
	calls   chan deferredCall
	now     func() time.Time
	oks     func() uint64 // store calls answered so far (the breaker's count)
	log     *zap.Logger
	metrics *Metrics
}

// newDeferredQueue returns an empty queue of at most maxDeferred calls; now is its clock
// (nil: time.Now).
func newDeferredQueue(now func() time.Time, oks func() uint64, log *zap.Logger, m *Metrics) *deferredQueue {
	if now == nil {
		now = time.Now
	}
	return &deferredQueue{calls: make(chan deferredCall, maxDeferred), now: now, oks: oks, log: log, metrics: m}
}

// len returns how many calls wait.
func (q *deferredQueue) len() int { return len(q.calls) }

// pushFailed queues d after the store failed it (or the debit it undoes): it runs again once
// the store has answered another call, or retryIdle later.
func (q *deferredQueue) pushFailed(d deferredCall) bool {
	d.failed, d.oks, d.at = true, q.oks(), q.now()
	return q.push(d)
}

// push adds d to the queue without starting a run, and reports whether there was room.
func (q *deferredQueue) push(d deferredCall) bool {
	select {
	case q.calls <- d:
		q.metrics.deferredLen.Set(float64(len(q.calls)))
		return true
	default:
		return false
	}
}

// dropped counts and logs a store call given up on.
func (q *deferredQueue) dropped(d deferredCall, why string) {
	q.metrics.droppedCalls.WithLabelValues(storeOpNames[d.op], why).Inc()
	q.log.Warn("store call dropped", zap.String("op", storeOpNames[d.op]), zap.String("reason", why))
}

// drain runs the calls that waited with run: one whose time is up is dropped, and one that
// failed waits again until the store has answered another call (or retryIdle has passed).
// run queues again what it cannot run.
func (q *deferredQueue) drain(run func(deferredCall)) {
	for range len(q.calls) {
		var d deferredCall
		select {
		case d = <-q.calls:
		default:
			return
		}
		q.metrics.deferredLen.Set(float64(len(q.calls)))
		now := q.now()
		if now.After(d.until) {
			q.dropped(d, "expired")
			continue
		}
		if d.failed && q.oks() == d.oks && now.Sub(d.at) < retryIdle {
			// The store has not answered anything since: wait, keeping the item's place.
			select {
			case q.calls <- d:
			default:
				q.dropped(d, "queue_full")
			}
			continue
		}
		run(d)
	}
}

// storeCall runs a store call that must not be lost (a refund, a compensation, a release)
// behind the breaker. One the breaker keeps from the store now waits in the queue; so does one
// that fails, when retry says running it again is safe (it applies once). The queue runs when
// the breaker closes and every second while it holds calls. It returns an error only when the
// call failed and was not queued, or the queue was full (errBreakerOpen).
func (g *Gateway) storeCall(parent context.Context, op int, retry bool, call func(context.Context) error) error {
	return g.runStoreCall(parent, g.deferredCall(op, retry, call))
}

// deferredCall returns call as a queue item of op, to be retried (if retry) until its time
// is up.
func (g *Gateway) deferredCall(op int, retry bool, call func(context.Context) error) deferredCall {
	return deferredCall{op: op, retry: retry, call: call, until: g.deferred.now().Add(g.retryFor(op))}
}

func (g *Gateway) runStoreCall(parent context.Context, d deferredCall) error {
	if !g.breaker.allow() {
		if !g.queue(d) {
			return errBreakerOpen
		}
		return nil
	}
	ctx, cancel := g.spendContext(context.WithoutCancel(parent)) // no timer for an in-process store
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
		if g.deferred.pushFailed(d) {
			return nil
		}
		g.deferred.dropped(d, "queue_full")
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

// queue adds d to the calls waiting for the breaker to close, and reports whether there was
// room.
func (g *Gateway) queue(d deferredCall) bool {
	if !g.deferred.push(d) {
		g.deferred.dropped(d, "queue_full")
		return false
	}
	if g.breaker.state.Load() == breakerClosed {
		// It closed meanwhile, maybe after its run of the queue began: run it now.
		go g.runDeferred()
	}
	return true
}

// queueFailed queues d after the store failed it, counting it dropped when there is no room.
func (g *Gateway) queueFailed(d deferredCall) {
	if !g.deferred.pushFailed(d) {
		g.deferred.dropped(d, "queue_full")
	}
}

// runDeferred runs the store calls that waited, each behind the breaker again: one that finds
// it open, or fails and may be retried, waits again, until its time is up.
func (g *Gateway) runDeferred() {
	g.deferred.drain(func(d deferredCall) {
		if err := g.runStoreCall(context.Background(), d); err != nil && err != errBreakerOpen {
			g.log.Warn("deferred store call failed", zap.String("op", storeOpNames[d.op]), zap.Error(err))
		}
	})
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
			if g.deferred.len() > 0 && !g.breaker.open() {
				g.runDeferred()
			}
			if g.local != nil && g.local.pending() > 0 && !g.breaker.open() {
				g.reconcile()
			}
		}
	}
}
