package gateway

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// scriptRuns returns how many EVALSHA and EVAL commands the server has run.
func scriptRuns(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		v, _, _ := strings.Cut(rest, ",")
		c, _ := strconv.ParseInt(v, 10, 64)
		n += c
	}
	return n
}

// TestRedisRoundTripsPerCall: an admitted call costs Redis exactly one script run, one round
// trip; with a concurrency cap two (the debit with its lease, then the release).
func TestRedisRoundTripsPerCall(t *testing.T) {
	srv := redistest.Start(t)
	rs, err := limiter.NewRedisStore(srv.Client, limiter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cap  int64
		want int64
	}{
		{"no cap", 0, 1},
		{"cap", 5, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) {
				c.Store, c.Clock = rs, nil // the Redis server's clock, as in production
				c.ConcurrencyOf = func(*orgs.Org) int64 { return tt.cap }
			})
			const calls = 20
			before := scriptRuns(t, srv.Client)
			for range calls {
				if resp, body := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, ""); resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
			}
			// The release runs as the handler returns, which may be after the client read
			// the answer: wait for it, then count.
			waitUntil(t, func() bool { return scriptRuns(t, srv.Client)-before >= tt.want*calls })
			if got := scriptRuns(t, srv.Client) - before; got != tt.want*calls {
				t.Fatalf("%d calls ran %d scripts in Redis, want %d", calls, got, tt.want*calls)
			}
		})
	}
}
