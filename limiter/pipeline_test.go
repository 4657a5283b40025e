package limiter_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/limiter/storetest"
)

func TestPipelinedStore(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T, opts limiter.Options) limiter.Store {
		s, err := limiter.NewRedisStore(srv.Client, opts)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := limiter.NewPipelinedStore(t.Context(), s, 64, 2)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	})
}

func TestPipelinedStoreCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	client, err := limiter.NewRedisClient(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	storetest.Run(t, func(t *testing.T, opts limiter.Options) limiter.Store {
		s, err := limiter.NewRedisStore(client, opts)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := limiter.NewPipelinedStore(t.Context(), s, 64, 2)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	})
}

// TestPipelinedStoreOneScriptRunPerDecision: many concurrent decisions share round trips, yet
// the script runs exactly once per decision, also after the script cache was flushed (the
// NOSCRIPT replies of a pipeline are run again alone, through EVAL).
func TestPipelinedStoreOneScriptRunPerDecision(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s, err := limiter.NewRedisStore(srv.Client, limiter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := limiter.NewPipelinedStore(t.Context(), s, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	k := limiter.NewKey("pipelined", 1_000_000)
	for _, flush := range []bool{false, true} {
		if flush {
			if err := srv.Client.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					if _, err := ps.Spend(ctx, k, 1, time.Time{}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	d, err := ps.Spend(ctx, k, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Used != 2000 {
		t.Fatalf("used = %d after 2,000 pipelined debits of 1, want 2000", d.Used)
	}
}

// TestPipelinedStoreCallerDeadline: a caller whose deadline passes gets its context's error.
func TestPipelinedStoreCallerDeadline(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "yes")
	s, err := limiter.NewRedisStore(srv.Client, limiter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := limiter.NewPipelinedStore(t.Context(), s, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	stalled := make(chan error, 1)
	go func() { stalled <- srv.Client.Do(context.Background(), "DEBUG", "SLEEP", "0.5").Err() }()
	defer func() { <-stalled }()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := ps.Spend(ctx, limiter.NewKey("late", 10), 1, time.Time{}); err == nil {
		t.Fatal("Spend on a stalled Redis past the caller's deadline succeeded")
	}
}
