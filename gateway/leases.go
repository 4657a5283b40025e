package gateway

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/limiter"
)

// leaseKeeper renews the concurrency leases of calls in flight, every third of the lease's
// time to live, so a lease can be short (a dead gateway's slots come back within it) while a
// call of any length keeps its slot. A call shorter than a third of the time to live is
// never renewed: it costs no store call beyond its debit and release.
type leaseKeeper struct {
	store   Store
	every   time.Duration
	timeout time.Duration
	clock   func() time.Time
	log     *zap.Logger
	breaker *breaker
	metrics *Metrics

	mu    sync.Mutex
	calls map[string]heldLease // lease id → its call
	stop  chan struct{}
	done  chan struct{}
}

type heldLease struct {
	key   limiter.Key
	since time.Time
}

func newLeaseKeeper(store Store, ttl, timeout time.Duration, clock func() time.Time, log *zap.Logger, b *breaker, m *Metrics) *leaseKeeper {
	k := &leaseKeeper{
		store: store, every: ttl / 3, timeout: timeout, clock: clock, log: log, breaker: b, metrics: m,
		calls: make(map[string]heldLease),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go k.run()
	return k
}

// add follows the lease of a call that just took it.
func (k *leaseKeeper) add(key limiter.Key, lease string) {
	k.mu.Lock()
	k.calls[lease] = heldLease{key: key, since: time.Now()}
	k.mu.Unlock()
}

// remove stops following a lease: its call is over.
func (k *leaseKeeper) remove(lease string) {
	k.mu.Lock()
	delete(k.calls, lease)
	k.mu.Unlock()
}

func (k *leaseKeeper) run() {
	defer close(k.done)
	t := time.NewTicker(k.every)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
			k.renew()
		}
	}
}

// renew renews, org by org, the leases held for at least a renewal period: one store call per
// org with such calls.
func (k *leaseKeeper) renew() {
	cutoff := time.Now().Add(-k.every)
	byOrg := map[string][]string{}
	keys := map[string]limiter.Key{}
	k.mu.Lock()
	for id, c := range k.calls {
		if c.since.After(cutoff) {
			continue
		}
		byOrg[c.key.Org] = append(byOrg[c.key.Org], id)
		keys[c.key.Org] = c.key
	}
	k.mu.Unlock()
	if len(byOrg) == 0 || k.breaker.open() {
		return // while the store is down its leases cannot be renewed; they expire
	}
	var now time.Time
	if k.clock != nil {
		now = k.clock()
	}
	for org, ids := range byOrg {
		ctx, cancel := context.WithTimeout(context.Background(), k.timeout)
		start := time.Now()
		n, err := k.store.Renew(ctx, keys[org], ids, now)
		cancel()
		if err != nil {
			k.metrics.observeStore(opRenew, resultError, start)
			k.log.Warn("lease renewal failed", zap.String("org", org), zap.Int("leases", len(ids)), zap.Error(err))
			continue
		}
		k.metrics.observeStore(opRenew, resultOK, start)
		if n < int64(len(ids)) {
			// Expired before their renewal (the store was unreachable longer than the lease's
			// time to live): their slots may be other calls' now.
			k.log.Warn("leases expired in flight", zap.String("org", org), zap.Int64("lost", int64(len(ids))-n))
		}
	}
}

func (k *leaseKeeper) close() {
	select {
	case <-k.stop:
	default:
		close(k.stop)
		<-k.done
	}
}
