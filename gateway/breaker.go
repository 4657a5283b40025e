package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
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
//
// Its clock (now) dates the opening and the probes of calls; the prober's ticker runs on
// real time.
type breaker struct {
	failures int32
	cooldown time.Duration
	probe    func(context.Context) error
	timeout  time.Duration // bounds one probe
	now      func() time.Time
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

// newBreaker returns a closed breaker; now is its clock (nil: time.Now).
func newBreaker(failures int, cooldown, timeout time.Duration, probe func(context.Context) error, now func() time.Time, log *zap.Logger, m *Metrics) *breaker {
	if now == nil {
		now = time.Now
	}
	b := &breaker{
		failures: int32(failures),
		cooldown: cooldown,
		probe:    probe,
		timeout:  timeout,
		now:      now,
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
	now := b.now().UnixNano()
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
		b.openedAt = b.now()
		b.nextProbe.Store(b.openedAt.Add(b.cooldown).UnixNano())
		b.log.Error("credit store breaker opened: calls skip the store and the fail mode applies",
			zap.Int32("failures_in_a_row", b.failed.Load()), zap.Duration("probe_every", b.cooldown), zap.Error(cause))
		if b.probe != nil && !b.probing && !b.stopped {
			b.probing = true
			go b.probeLoop()
		}
	case breakerHalfOpen:
		b.log.Info("credit store breaker half-open: the store answered a probe", zap.Duration("open_for", b.now().Sub(b.openedAt)))
	case breakerClosed:
		b.failed.Store(0)
		b.log.Info("credit store breaker closed: the store is in use again", zap.Duration("open_for", b.now().Sub(b.openedAt)))
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
