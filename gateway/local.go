package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/limiter"
)

// Fail mode local (CREDITGATE_FAIL_MODE=local): while the store cannot decide, each gateway
// keeps limiting on its own, in memory: an org gets this gateway's share of the credits it had
// left at the last answer the store gave (share = 1 / the gateways alive, which they learn
// from a heartbeat in the store), or of its whole limit when the store never answered for it.
// Every call admitted so is kept in a ledger and, once the store answers again, written into
// the org's window and billing meter as a forced debit under its own call id, so exactly once
// whatever the retries. Concurrency caps are not held in this mode.

// heartbeatEvery is how often a gateway says it is alive; its heartbeat lasts heartbeatTTL.
const (
	heartbeatEvery = time.Second
	heartbeatTTL   = 5 * time.Second
)

// maxLedger bounds the calls a gateway admits on its own before the store answers again;
// past it, calls are refused as in fail mode closed.
const maxLedger = 1 << 20

// localLimiter decides while the store cannot: the local windows of one outage, its shares,
// and the ledger of what it admitted.
type localLimiter struct {
	opts limiter.Options
	id   string       // this gateway, in the heartbeat
	live atomic.Int64 // gateways alive at the last heartbeat (at least 1)

	writing sync.Mutex // one reconcile at a time: two would write a call, then refund it

	mu     sync.Mutex
	store  *limiter.MemoryStore  // this outage's windows; nil between outages
	shares map[string]int64      // org → its share in this outage
	ledger map[string]localDebit // call id → a debit still to write into the store
}

// localDebit is a call admitted on the gateway's own, to be written into the store.
type localDebit struct {
	key  limiter.Key // the org's key in the store, with the call's rule
	cost int64
	at   time.Time
	d    limiter.Decision // the local decision, for a refund before it is written
	// sent: a write of it into the store was attempted, and may have landed even if its
	// reply was lost; a refund must then go to the store too.
	sent bool
	// settled: its answer settled its cost (settle) after it entered the ledger.
	settled bool
}

func newLocalLimiter(opts limiter.Options) *localLimiter {
	var b [8]byte
	_, _ = rand.Read(b[:])
	l := &localLimiter{opts: opts, id: hex.EncodeToString(b[:]), ledger: map[string]localDebit{}}
	l.live.Store(1)
	return l
}

// errLedgerFull refuses a call the gateway could admit on its own but not remember.
var errLedgerFull = errors.New("local ledger full")

// spend decides a debit of cost for t on the gateway's own: against t's share, in a window
// of this outage. An allowed debit joins the ledger under call, the id of the store debit
// that got no answer: written later under it, it is written once whether that debit ran or
// not (a known call id is not debited again).
func (l *localLimiter) spend(t *orgState, key limiter.Key, call string, cost int64, now time.Time, retry time.Duration) (limiter.Decision, error) {
	if now.IsZero() {
		now = time.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ledger) >= maxLedger {
		return limiter.Decision{}, errLedgerFull
	}
	if l.store == nil {
		s, err := limiter.NewMemoryStore(l.opts)
		if err != nil {
			return limiter.Decision{}, err
		}
		l.store, l.shares = s, map[string]int64{}
	}
	share, ok := l.shares[t.org.ID]
	if !ok {
		left := t.remaining.Load()
		if left < 0 { // no answer from the store for this org since start
			left = t.key.Limit
		}
		share = max(left, 0) / max(l.live.Load(), 1)
		l.shares[t.org.ID] = share
	}
	fromStore := call != ""
	if !fromStore {
		call = limiter.NewCallID()
	}
	lk := limiter.NewKey(t.org.ID, max(share, 1)).WithCall(call)
	var d limiter.Decision
	var err error
	if cost > share {
		// Not "can never succeed": the share is this outage's, and the store decides again
		// when it answers.
		d, err = l.store.Spend(context.Background(), lk.WithCall(""), 0, now)
		d.Allowed, err = false, limiter.ErrOverLimit
	} else {
		d, err = l.store.Spend(context.Background(), lk, cost, now)
	}
	if errors.Is(err, limiter.ErrOverLimit) {
		// The wait the store would give is the outage window's: meaningless. Ask again once
		// the store may be back.
		d.RetryAfter, d.Reset = retry, retry
	}
	d.Remaining = max(share-d.Used, 0)
	if err == nil && d.Allowed && cost > 0 {
		// A call id from the store's unanswered debit may have a debit there already: as
		// good as sent.
		l.ledger[call] = localDebit{key: key.WithConcurrency(0, 0), cost: cost, at: now, d: d, sent: fromStore}
	}
	return d, err
}

// refund takes back a call admitted on the gateway's own that was not served. It reports
// whether that is all: false when the call's write into the store was attempted (it is then
// compensated there, by its call id).
func (l *localLimiter) refund(call string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.ledger[call]
	if !ok {
		return false // written into the store already
	}
	delete(l.ledger, call)
	_ = l.store.Refund(context.Background(), limiter.NewKey(e.key.Org, e.d.Limit), e.d)
	return !e.sent
}

// settle corrects a call admitted on the gateway's own to the cost its answer settled on,
// while it waits in the ledger: its local window now holds that cost, and it is written into
// the store with it. It reports whether the call was in the ledger; false: it was written
// into the store already, and is settled there.
func (l *localLimiter) settle(call string, cost int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.ledger[call]
	if !ok {
		return false
	}
	if l.store != nil {
		_, _ = l.store.Settle(context.Background(), limiter.NewKey(e.key.Org, e.d.Limit), e.d, cost, time.Time{})
	}
	e.cost, e.settled = cost, true
	l.ledger[call] = e
	return true
}

// pending returns how many calls wait to be written into the store.
func (l *localLimiter) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ledger)
}

// reconcile writes the ledger into the store, each call as a forced debit at its own time
// under its call id (a retry of one already written does nothing), and ends the outage when
// all are written. What the store then says an org has left is its word for the next outage.
func (g *Gateway) reconcile() {
	l := g.local
	if !l.writing.TryLock() {
		return
	}
	defer l.writing.Unlock()
	l.mu.Lock()
	calls := make(map[string]localDebit, len(l.ledger))
	for id, e := range l.ledger {
		calls[id] = e
	}
	l.mu.Unlock()
	var written, failed int
	for id, e := range calls {
		if g.breaker.open() {
			break
		}
		l.mu.Lock()
		cur, still := l.ledger[id]
		if still {
			cur.sent = true
			l.ledger[id] = cur
		}
		l.mu.Unlock()
		if !still {
			continue // refunded meanwhile
		}
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
		start := time.Now()
		d, err := g.spendIn(ctx, e.key.WithForce().WithCall(id), e.cost, e.at)
		cancel()
		if err != nil && !errors.Is(err, limiter.ErrCompensated) {
			g.metrics.observeStore(opSpend, resultError, start)
			g.breaker.done(err)
			failed++
			continue // kept, marked sent: a refund now is compensated in the store
		}
		g.metrics.observeStore(opSpend, resultOK, start)
		g.breaker.done(nil)
		// The org as the request path knows it: configured, or held from tokens.
		if t, ok := g.orgByID(e.key.Org); ok && err == nil {
			if d.Addon > 0 && t.m != nil {
				t.m.addon.Add(float64(d.Addon))
			}
			t.remaining.Store(d.Remaining)
		}
		l.mu.Lock()
		cur, still = l.ledger[id]
		delete(l.ledger, id) // a refund racing this write has compensated it by its id
		l.mu.Unlock()
		// Settled while a write was on the wire: corrected in the store by its id (the record
		// the write left), queued to run at once (the store has just answered). A write answered
		// ErrCompensated found the record of an earlier one, whose reply was lost and whose
		// cost may be the reservation: settled whenever the answer settled it (a settle to the
		// cost a record holds moves nothing, and one of a compensated call does nothing).
		if still && (cur.cost != e.cost || err != nil && cur.settled) {
			wd := limiter.Decision{Allowed: true, Cost: e.cost, Call: id, Bucket: d.Bucket, Addon: d.Addon, Day: d.Day}
			g.queue(g.deferredCall(opSettle, true, func(ctx context.Context) error {
				_, err := g.settleIn(ctx, e.key, wd, cur.cost, g.decisionTime())
				return err
			}))
		}
		written++
	}
	l.mu.Lock()
	if len(l.ledger) == 0 && !g.breaker.open() {
		l.store, l.shares = nil, nil // the outage is over: the next one starts from the store's word
	}
	left := len(l.ledger)
	l.mu.Unlock()
	g.metrics.localLedger.Set(float64(left))
	if written > 0 || failed > 0 {
		g.log.Info("calls admitted without the store written into it",
			zap.Int("written", written), zap.Int("failed", failed), zap.Int("left", left))
	}
}

// heartbeatLoop tells the store this gateway is alive, and learns how many are, every second.
func (g *Gateway) heartbeatLoop() {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	beat := func() {
		if g.breaker.open() {
			return // the last count stands while the store is away
		}
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
		n, err := g.cfg.Store.Heartbeat(ctx, g.local.id, heartbeatTTL)
		cancel()
		if err == nil && n > 0 {
			g.local.live.Store(n)
			g.metrics.liveGateways.Set(float64(n))
		}
	}
	beat()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			beat()
		}
	}
}
