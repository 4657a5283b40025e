package gateway

import (
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestBreakerClock: without a probe, an open breaker lets one call through per cooldown, as
// its clock tells.
func TestBreakerClock(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	b := newBreaker(2, time.Minute, time.Second, nil, clock.Now, zap.NewNop(), NewMetrics(MetricsOptions{}))
	defer b.close()
	down := errors.New("down")
	b.done(down)
	if !b.allow() {
		t.Fatal("one failure opened the breaker; want two")
	}
	b.done(down)
	if b.allow() {
		t.Fatal("open breaker let a call through before the cooldown")
	}
	clock.advance(time.Minute)
	if !b.allow() {
		t.Fatal("no probing call after the cooldown")
	}
	if b.allow() {
		t.Fatal("two probing calls in one cooldown")
	}
	b.done(nil)
	if b.open() || !b.allow() {
		t.Fatal("a successful probe did not close the breaker")
	}
}

// TestDeferredQueueClock: a queued call past its deadline is dropped; one that failed waits
// for the store to answer another call, or retryIdle, as the queue's clock tells.
func TestDeferredQueueClock(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	var oks uint64
	q := newDeferredQueue(clock.Now, func() uint64 { return oks }, zap.NewNop(), NewMetrics(MetricsOptions{}))
	var ran []int
	run := func(d deferredCall) { ran = append(ran, d.op) }
	q.push(deferredCall{op: opRelease, until: clock.Now().Add(time.Second)})
	q.pushFailed(deferredCall{op: opRefund, until: clock.Now().Add(time.Hour)})
	clock.advance(2 * time.Second)
	q.drain(run)
	if len(ran) != 0 || q.len() != 1 {
		t.Fatalf("ran %v, %d queued; want none run (one expired, one waiting), 1 queued", ran, q.len())
	}
	clock.advance(retryIdle)
	q.drain(run)
	if len(ran) != 1 || ran[0] != opRefund || q.len() != 0 {
		t.Fatalf("ran %v, %d queued; want the refund run after retryIdle", ran, q.len())
	}
}
