package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditgate/creditgate/limiter"
)

// evalshaCalls returns how many EVALSHA and EVAL commands the server has run, and the
// microseconds it spent in them (script execution only, no network).
func evalshaCalls(ctx context.Context, c *redis.Client) (calls, usec int64, err error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		_, stats, _ := strings.Cut(strings.TrimSpace(line), ":")
		for _, kv := range strings.Split(stats, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				calls += n
			case "usec":
				usec += n
			}
		}
	}
	return calls, usec, nil
}

var benchCSV = regexp.MustCompile(`"EVALSHA[^"]*","([\d.]+)"`)

// redisBenchmark runs the spend script with redis-benchmark (EVALSHA, conns clients, no
// pipelining): the ceiling of one server for this script, with a client that costs nothing.
// The command is store's for a debit of 1 credit from org, without add-ons or a rule, at the
// server's clock, but without the debit's record (limiter.RedisStore.SpendCommand).
func redisBenchmark(store *limiter.RedisStore, addr, org string, conns int, n int) (float64, error) {
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		return 0, errors.New("redis-benchmark not found (it comes with redis-server)")
	}
	host, port, _ := strings.Cut(addr, ":")
	args := []string{"-h", host, "-p", port, "-c", strconv.Itoa(conns), "-n", strconv.Itoa(n), "--csv"}
	args = append(args, store.SpendCommand(limiter.NewKey(org, 1_000_000_000_000_000), 1)...)
	out, err := exec.Command("redis-benchmark", args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark: %w: %s", err, out)
	}
	m := benchCSV.FindStringSubmatch(string(out))
	if m == nil {
		return 0, fmt.Errorf("redis-benchmark output not understood: %s", out)
	}
	return strconv.ParseFloat(m[1], 64)
}

// storeDecisions runs RedisStore.Spend from conns goroutines, n decisions in all, as the
// gateway calls it (one org, server clock), and returns decisions per second.
func storeDecisions(s limiter.Store, org string, conns, n int) (float64, error) {
	k := limiter.NewKey(org, 1_000_000_000_000_000)
	var (
		left  atomic.Int64
		wg    sync.WaitGroup
		first atomic.Value
	)
	left.Store(int64(n))
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if _, err := s.Spend(context.Background(), k, 1, time.Time{}); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// memoryPerOrg saturates one org's 24h window (a debit every 30s for a day, so every
// one-minute bucket holds credits) and returns MEMORY USAGE of its keys, and the buckets live.
func memoryPerOrg(ctx context.Context, c *redis.Client, s limiter.Store) (orgMemory, int64, error) {
	const org = "bench-memory"
	k := limiter.NewKey(org, 1_000_000_000)
	start := time.UnixMilli(1_767_225_600_000)
	for at := start; at.Before(start.Add(24*time.Hour + time.Minute)); at = at.Add(30 * time.Second) {
		if _, err := s.Spend(ctx, k, 1, at); err != nil {
			return orgMemory{}, 0, err
		}
	}
	m, err := orgMemoryUsage(ctx, c, org)
	if err != nil {
		return m, 0, err
	}
	d, err := s.Spend(ctx, k, 0, start.Add(24*time.Hour+time.Minute))
	if err != nil {
		return m, 0, err
	}
	// Credits held one per 30s, so the live buckets are used/2.
	return m, d.Used / 2, nil
}

// scriptTime is the time Redis spent running scripts, and the calls, over some runs.
type scriptTime struct{ calls, usec int64 }

// scriptStats reads the scripts' totals so far (see evalshaCalls); zero when INFO fails.
func scriptStats(ctx context.Context, c *redis.Client) scriptTime {
	calls, usec, _ := evalshaCalls(ctx, c)
	return scriptTime{calls: calls, usec: usec}
}

// add counts what ran between the totals before and after.
func (s *scriptTime) add(before, after scriptTime) {
	s.calls += after.calls - before.calls
	s.usec += after.usec - before.usec
}

func (s scriptTime) perCall() time.Duration {
	return time.Duration(s.usec) * time.Microsecond / time.Duration(max(s.calls, 1))
}
