package limiter_test

import (
	"testing"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

func TestPeriodOf(t *testing.T) {
	d := func(y int, m time.Month, day, h int) time.Time { return time.Date(y, m, day, h, 0, 0, 0, time.UTC) }
	tests := []struct {
		give               time.Time
		anchor             int
		wantStart, wantEnd time.Time
	}{
		{d(2026, 1, 1, 0), 1, d(2026, 1, 1, 0), d(2026, 2, 1, 0)},
		{d(2026, 1, 31, 23), 1, d(2026, 1, 1, 0), d(2026, 2, 1, 0)},
		{d(2026, 1, 14, 23), 15, d(2025, 12, 15, 0), d(2026, 1, 15, 0)}, // before the anchor: the period of last month
		{d(2026, 1, 15, 0), 15, d(2026, 1, 15, 0), d(2026, 2, 15, 0)},
		{d(2028, 2, 29, 12), 28, d(2028, 2, 28, 0), d(2028, 3, 28, 0)}, // leap day
		{d(2026, 12, 31, 0), 28, d(2026, 12, 28, 0), d(2027, 1, 28, 0)},
		{time.Date(2026, 3, 1, 1, 0, 0, 0, time.FixedZone("UTC+2", 7200)), 1, d(2026, 2, 1, 0), d(2026, 3, 1, 0)}, // periods are UTC
	}
	for _, tt := range tests {
		start, end := limiter.PeriodOf(tt.give, tt.anchor)
		if !start.Equal(tt.wantStart) || !end.Equal(tt.wantEnd) {
			t.Errorf("PeriodOf(%s, %d) = %s..%s, want %s..%s", tt.give, tt.anchor, start, end, tt.wantStart, tt.wantEnd)
		}
	}
}
