package limiter_test

import (
	"context"
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/limiter/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts limiter.Options) limiter.Store {
		s, err := limiter.NewMemoryStore(opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		give limiter.Options
		ok   bool
	}{
		{limiter.Options{}, true},
		{limiter.Options{Window: 4 * time.Second, Bucket: time.Second}, true},
		{limiter.Options{Window: time.Second, Bucket: 2 * time.Second}, false},
		{limiter.Options{Window: time.Second, Bucket: 1500 * time.Microsecond}, false},
		{limiter.Options{Window: -time.Second}, false},
	}
	for _, tt := range tests {
		_, err := limiter.NewMemoryStore(tt.give)
		if (err == nil) != tt.ok {
			t.Errorf("NewMemoryStore(%+v) error = %v, want ok=%v", tt.give, err, tt.ok)
		}
	}
}

func TestDefaultBucket(t *testing.T) {
	tests := []struct {
		give, want time.Duration
	}{
		{24 * time.Hour, time.Minute},
		{time.Hour, 2500 * time.Millisecond},
		{4 * time.Second, 2 * time.Millisecond},
		{time.Second, time.Millisecond},
	}
	for _, tt := range tests {
		if got := limiter.DefaultBucket(tt.give); got != tt.want {
			t.Errorf("DefaultBucket(%s) = %s, want %s", tt.give, got, tt.want)
		}
	}
}

func BenchmarkMemorySpend(b *testing.B) {
	s, _ := limiter.NewMemoryStore(limiter.Options{})
	k := limiter.NewKey("bench", 1<<62)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Spend(ctx, k, 1, time.Time{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
