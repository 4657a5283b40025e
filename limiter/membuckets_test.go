package limiter

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMemBucketsLayouts drives a window that switches between the list and the ring and one
// that stays a list through the same random debits, refunds, expiries and clocks running
// back, and checks they always hold the same buckets, and that both layouts were used.
func TestMemBucketsLayouts(t *testing.T) {
	const width, window = 1000, 20_000
	slots := ringSlots(window, width)
	var got, want memBuckets
	rng := rand.New(rand.NewPCG(7, 17))
	now := int64(1_767_225_600_000)
	var rings, lists, shrinks int
	held := func(m *memBuckets) []memBucket {
		var out []memBucket
		m.each(width, func(start, credits int64) bool {
			out = append(out, memBucket{start, credits})
			return true
		})
		return out
	}
	for step := range 20_000 {
		// Busy stretches fill the window, quiet ones let it drain.
		busy := step/2000%2 == 0
		switch now += int64(rng.IntN(1500)); {
		case rng.IntN(20) == 0:
			now -= int64(rng.IntN(30_000)) // a clock that ran back
		case !busy:
			now += int64(rng.IntN(8000))
		}
		cutoff := now - window - width
		if f, w := got.expire(cutoff, width), want.expire(cutoff, width); f != w {
			t.Fatalf("step %d: expire freed %d, want %d", step, f, w)
		}
		switch op := rng.IntN(10); {
		case op < 7 && (busy || op == 0):
			b := now - now%width
			if !want.empty() {
				b = max(b, want.newest()-(slots-1)*width)
			}
			c := 1 + rng.Int64N(5)
			got.add(b, c, width, slots)
			want.add(b, c, width, 1<<40)
		case op < 9 && !want.empty():
			list := held(&want)
			b := list[rng.IntN(len(list))].start
			n := 1 + rng.Int64N(6)
			if g, w := got.take(b, n, width), want.take(b, n, width); g != w {
				t.Fatalf("step %d: take(%d, %d) = %d, want %d", step, b, n, g, w)
			}
		default:
			b := now - now%width - int64(rng.IntN(25))*width + int64(rng.IntN(2)) // maybe no bucket's start
			if g, w := got.take(b, 3, width), want.take(b, 3, width); g != w {
				t.Fatalf("step %d: take(%d) of a bucket perhaps not held = %d, want %d", step, b, g, w)
			}
		}
		if g, w := held(&got), held(&want); !slices.Equal(g, w) {
			t.Fatalf("step %d: holds %v, want %v", step, g, w)
		}
		if got.empty() != want.empty() || !got.empty() && (got.oldest() != want.oldest() || got.newest() != want.newest()) {
			t.Fatalf("step %d: oldest/newest differ", step)
		}
		wasRing := got.ring != nil
		if wasRing {
			rings++
		} else {
			lists++
		}
		if !wasRing && rings > 0 && step > 0 {
			shrinks++
		}
	}
	if rings == 0 || lists == 0 || shrinks == 0 {
		t.Fatalf("steps as a ring %d, as a list %d (after a ring %d): both layouts must be used", rings, lists, shrinks)
	}
}
