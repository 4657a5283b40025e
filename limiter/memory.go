package limiter

import (
	"context"
	"sync"
	"time"
)

var (
	_ Store       = (*MemoryStore)(nil)
	_ Compensator = (*MemoryStore)(nil)
)

// MemoryStore keeps rolling windows in process memory, with the same semantics as
// RedisStore (bucket for bucket). It serves a single replica: nothing is shared or kept
// across restarts. Each org's window holds at most Window/Bucket+1 buckets; a window stays
// allocated once its org has been seen (orgs come from configuration, so they are bounded).
type MemoryStore struct {
	window, bucket, leaseTTL int64 // ms
	callTTL                  int64 // ms
	slot                     int64 // ms, of the usage by rule (UsageSlot)

	mu      sync.RWMutex
	windows map[string]*memWindow

	notices memNotices // usage notices: settings, outboxes (notices.go)
}

type memWindow struct {
	mu      sync.Mutex
	buckets memBuckets // credits by bucket (add keeps them in order even if a clock runs back)
	used    int64
	leases  map[string]int64    // lease id -> expiry (unix ms), calls in flight
	heavy   map[string]int64    // the same, heavy calls
	usage   map[usageSlot]int64 // credits by usage slot and rule (usage.go)

	addon    int64           // billing: add-on limit set through Meter.SetAddon...
	addonSet bool            // ...if ever set
	meter    map[int64]int64 // billing: UTC day -> add-on credits (or additional calls) consumed
	periods  map[int64]int64 // monthly plans: period start (UTC day) -> calls counted
	fired    map[int64]int64 // usage notices: threshold fired (percent) -> its level (credits)

	calls map[string]callRecord // debits by call id, and calls compensated before theirs
	// callOrder lists the records in the order they were written, from callHead: expired
	// ones are dropped from its head, each once.
	callOrder []callExpiry
	callHead  int
}

// callRecord is what refund.lua keeps of a call (see RedisStore's refund): the debit, or a
// mark that it was refunded, or that it was compensated before it ran.
type callRecord struct {
	state                    byte // 'd' debited, 'r' refunded, 'x' compensated before the debit
	settled                  bool // a debit settled to the cost of its answer (Settle)
	bucket, cost, addon, day int64
	expires                  int64 // unix ms
}

// callExpiry is when the record of call id, as written then, expires.
type callExpiry struct {
	expires int64
	id      string
}

// putCall writes the record of call id.
func (w *memWindow) putCall(id string, r callRecord) {
	if w.calls == nil {
		w.calls = make(map[string]callRecord)
	}
	w.calls[id] = r
	w.callOrder = append(w.callOrder, callExpiry{r.expires, id})
}

// sweepCalls drops the records expired at now, from the head of the order they were written
// in: each record is looked at once, whatever the number kept (a record rewritten since is
// left to its newer entry).
func (s *MemoryStore) sweepCalls(w *memWindow, now int64) {
	for w.callHead < len(w.callOrder) && w.callOrder[w.callHead].expires <= now {
		e := w.callOrder[w.callHead]
		if r, ok := w.calls[e.id]; ok && r.expires == e.expires {
			delete(w.calls, e.id)
		}
		w.callOrder[w.callHead] = callExpiry{}
		w.callHead++
	}
	if w.callHead > 64 && w.callHead*2 > len(w.callOrder) {
		n := copy(w.callOrder, w.callOrder[w.callHead:])
		clear(w.callOrder[n:])
		w.callOrder, w.callHead = w.callOrder[:n], 0
	}
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(opts Options) (*MemoryStore, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &MemoryStore{
		window:   opts.Window.Milliseconds(),
		bucket:   opts.Bucket.Milliseconds(),
		leaseTTL: opts.LeaseTTL.Milliseconds(),
		callTTL:  opts.CallTTL.Milliseconds(),
		slot:     UsageSlot(opts.Window).Milliseconds(),
		windows:  make(map[string]*memWindow),
	}, nil
}

func (s *MemoryStore) get(org string) *memWindow {
	s.mu.RLock()
	w := s.windows[org]
	s.mu.RUnlock()
	if w != nil {
		return w
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w = s.windows[org]; w == nil {
		w = &memWindow{}
		s.windows[org] = w
	}
	return w
}

// lock returns org's window, locked (the caller unlocks it), and now in unix ms (the zero
// time meaning the local clock).
func (s *MemoryStore) lock(org string, now time.Time) (*memWindow, int64) {
	if now.IsZero() {
		now = time.Now()
	}
	w := s.get(org)
	w.mu.Lock()
	return w, now.UnixMilli()
}

// Spend implements Store.
func (s *MemoryStore) Spend(_ context.Context, key Key, cost int64, now time.Time) (Decision, error) {
	if err := checkCost(key, cost); err != nil {
		return Decision{}, err
	}
	w, ms := s.lock(key.Org, now)
	defer w.mu.Unlock()

	thresholds := s.notices.thresholds(key)
	if dropped := w.buckets.expire(ms-s.window-s.bucket, s.bucket); dropped > 0 {
		w.used -= dropped
		s.judgeNotices(w, key.Org, -1, thresholds, ms) // re-arm
	}
	call := callID(key, cost)
	recNow := ms // a forced debit carries its call's own time: its record lives from now
	if key.Force {
		recNow = time.Now().UnixMilli()
	}
	key.Limit = w.limitFor(key) // billing: with add-ons, free allotment + the add-on limit held
	if call != "" {
		s.sweepCalls(w, recNow)
		if r, seen := w.calls[call]; seen && r.expires > recNow {
			if key.Force || r.state != 'd' {
				return decide(statusCompensated, key, 0, w.used, 0, 0, 0, 0, call)
			}
			// A resend of a debit that ran: answered as it was, nothing debited again.
			var inFlight int64
			if key.Concurrency > 0 {
				inFlight = expireLeases(w.leases, ms)
			}
			d, err := decide(statusReplayed, key, r.cost, w.used, 0, s.reset(w, ms), r.bucket, inFlight, call)
			d.Addon, d.Day = r.addon, r.day
			return d, err
		}
	}
	if cost > key.Limit && !key.Force {
		return decide(statusCostExceedsLimit, key, cost, w.used, 0, s.reset(w, ms), 0, 0, call)
	}
	// Concurrency comes before credits: a call refused for it is not debited.
	var inFlight int64
	if key.Concurrency > 0 && cost > 0 {
		inFlight = expireLeases(w.leases, ms)
		if inFlight >= key.Concurrency {
			return decide(statusConcurrency, key, cost, w.used, 0, s.reset(w, ms), 0, inFlight, call)
		}
		if key.HeavyConcurrency > 0 {
			if heavy := expireLeases(w.heavy, ms); heavy >= key.HeavyConcurrency {
				return decide(statusHeavy, key, cost, w.used, 0, s.reset(w, ms), 0, heavy, call)
			}
		}
	}
	switch {
	case w.used+cost > key.Limit && !key.Force:
		return decide(statusOverLimit, key, cost, w.used, s.retryAfter(w, w.used+cost-key.Limit, ms), s.reset(w, ms), 0, 0, call)
	case cost == 0:
		return decide(statusAllowed, key, 0, w.used, 0, s.reset(w, ms), 0, 0, call)
	}

	b := ms - ms%s.bucket
	slots := ringSlots(s.window, s.bucket)
	if !w.buckets.empty() {
		// A clock that ran back: keep the window's span within ceil(window/bucket)+1 buckets,
		// as RedisStore's ring (and memBuckets') must.
		b = max(b, w.buckets.newest()-(slots-1)*s.bucket)
	}
	w.buckets.add(b, cost, s.bucket, slots)
	w.used += cost
	queued := s.judgeNotices(w, key.Org, key.Limit, thresholds, ms)
	day := dayOf(ms)
	addon := w.meterDebit(key, w.used-cost, w.used, day)
	s.record(w, key.Rule, b, cost, ms)
	w.putCall(call, callRecord{state: 'd', bucket: b, cost: cost, addon: addon, day: day, expires: recNow + s.callTTL})
	if key.Concurrency > 0 {
		if w.leases == nil {
			w.leases, w.heavy = make(map[string]int64), make(map[string]int64)
		}
		w.leases[call] = ms + s.leaseTTL
		if key.HeavyConcurrency > 0 {
			w.heavy[call] = ms + s.leaseTTL
		}
		inFlight++
	}
	d, err := decide(statusAllowed, key, cost, w.used, 0, s.reset(w, ms), b, inFlight, call)
	d.Addon, d.Day, d.Notices = addon, day, queued
	return d, err
}

// expireLeases drops the leases that expired by now and returns how many remain.
func expireLeases(leases map[string]int64, now int64) int64 {
	for id, exp := range leases {
		if exp <= now {
			delete(leases, id)
		}
	}
	return int64(len(leases))
}

// Release implements Store.
func (s *MemoryStore) Release(_ context.Context, key Key, d Decision) error {
	if d.Lease == "" {
		return nil
	}
	w := s.get(key.Org)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.leases, d.Lease)
	delete(w.heavy, d.Lease)
	return nil
}

// Refund implements Store. With the debit's call id, it applies once whatever the retries.
func (s *MemoryStore) Refund(_ context.Context, key Key, d Decision) error {
	if !d.Allowed || d.Cost <= 0 {
		return nil
	}
	w := s.get(key.Org)
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now().UnixMilli()
	if r, ok := w.calls[d.Call]; ok && d.Call != "" {
		if r.state != 'd' {
			return nil // refunded already
		}
		d.Bucket, d.Cost, d.Addon, d.Day = r.bucket, r.cost, r.addon, r.day
		// Marked refunded for a whole TTL from now, as refund.lua does.
		w.putCall(d.Call, callRecord{state: 'r', expires: now + s.callTTL})
	} else if d.Call != "" {
		// Older than its record: refunded by the decision's values, and marked so that a
		// retry does nothing.
		w.putCall(d.Call, callRecord{state: 'r', expires: now + s.callTTL})
	}
	s.refund(w, key, d)
	return nil
}

// Compensate implements Compensator.
func (s *MemoryStore) Compensate(_ context.Context, key Key, call string, now time.Time) error {
	if call == "" {
		return nil
	}
	w, ms := s.lock(key.Org, now)
	defer w.mu.Unlock()
	s.sweepCalls(w, ms)
	r, ok := w.calls[call]
	switch {
	case !ok || r.expires <= ms:
		w.putCall(call, callRecord{state: 'x', expires: ms + s.callTTL})
	case r.state == 'd':
		w.putCall(call, callRecord{state: 'r', expires: ms + s.callTTL})
		s.refund(w, key, Decision{Allowed: true, Cost: r.cost, Bucket: r.bucket, Addon: r.addon, Day: r.day})
	}
	// The call's lease, if it took one, goes with it (release.lua does the same in Redis).
	delete(w.leases, call)
	delete(w.heavy, call)
	return nil
}

// refund gives back d's credits from the bucket that recorded them, w locked.
func (s *MemoryStore) refund(w *memWindow, key Key, d Decision) {
	n := w.buckets.take(d.Bucket, d.Cost, s.bucket)
	if n == 0 {
		w.unmeterDay(debitDay(d), d.Addon) // its bucket expired: it gives nothing back, and is not billed
		return
	}
	w.unmeterDrop(debitDay(d), refundMetered(key, w.used, n), d.Addon)
	w.used -= n
	s.judgeNotices(w, key.Org, -1, nil, 0) // re-arm
	s.unrecord(w, key.Rule, d.Bucket, n)
}

// retryAfter returns the ms until need credits have freed up, walking the oldest first.
func (s *MemoryStore) retryAfter(w *memWindow, need, now int64) int64 {
	var got int64
	after := s.window + s.bucket
	w.buckets.each(s.bucket, func(start, credits int64) bool {
		if got += credits; got >= need {
			after = start + s.bucket + s.window - now
			return false
		}
		return true
	})
	return after
}

func (s *MemoryStore) reset(w *memWindow, now int64) int64 {
	if w.buckets.empty() {
		return 0
	}
	return w.buckets.oldest() + s.bucket + s.window - now
}
