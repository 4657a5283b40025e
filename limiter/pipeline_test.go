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

// TestPipelinedStoreAbandonedCallNotSent: a call whose caller gave up while it waited for a
// flush (client gone, deadline passed) is not sent, so it debits nothing. Redis is paused
// so the first call holds the only flusher while the second waits in the queue.
func TestPipelinedStoreAbandonedCallNotSent(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s, err := limiter.NewRedisStore(srv.Client, limiter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LoadScripts(ctx); err != nil {
		t.Fatal(err)
	}
	ps, err := limiter.NewPipelinedStore(t.Context(), s, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	k := limiter.NewKey("abandoned", 1000)
	if err := srv.Client.Do(ctx, "CLIENT", "PAUSE", "1000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		_, err := ps.Spend(ctx, k, 1, time.Time{})
		first <- err
	}()
	time.Sleep(200 * time.Millisecond) // the flusher has taken the first call and waits on Redis
	// A client that disconnects: its context is canceled, and it has no deadline.
	gone, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := ps.Spend(gone, k, 100, time.Time{}); err == nil {
		t.Fatal("Spend canceled during a 1s pause succeeded")
	}
	if err := <-first; err != nil {
		t.Fatalf("first Spend: %v", err)
	}
	// The queue drains in order: a later call comes back only after the abandoned one was seen.
	d, err := ps.Spend(ctx, k, 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Used != 1 {
		t.Fatalf("used = %d, want 1: the abandoned call of 100 credits was sent", d.Used)
	}
}
