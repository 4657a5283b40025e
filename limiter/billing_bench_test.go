package limiter_test

import (
	"context"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
)

// BenchmarkRedisSpendAddons compares one debit on the real server without add-ons (plain) and
// with add-ons, every debit above the free allotment and so metered (addons), and one monthly
// plan call count (period).
func BenchmarkRedisSpendAddons(b *testing.B) {
	srv := redistest.Start(b)
	s, err := limiter.NewRedisStore(srv.Client, limiter.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.LoadScripts(ctx); err != nil {
		b.Fatal(err)
	}
	keys := map[string]limiter.Key{
		"plain":  limiter.NewKey("bench-plain", 1<<50),
		"addons": limiter.NewKey("bench-addons", 1).WithAddons(1, 1<<50, 1<<50),
	}
	for _, name := range []string{"plain", "addons"} {
		k := keys[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Spend(ctx, k, 1, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("period", func(b *testing.B) {
		k := limiter.PeriodKey{Org: "bench-period", Monthly: 1 << 50, MaxAdditional: 2 << 50, AnchorDay: 1}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.SpendCall(ctx, k, time.Time{}, true); err != nil {
				b.Fatal(err)
			}
		}
	})
}
