package limiter_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
)

// scriptSends counts the scripts a cluster client sends to its nodes, alone or in pipelines:
// a hook on each node's client sees every attempt the cluster client makes.
type scriptSends struct{ n atomic.Int64 }

func (h *scriptSends) count(cmd redis.Cmder) {
	if name := cmd.Name(); name == "evalsha" || name == "eval" {
		h.n.Add(1)
	}
}

func (h *scriptSends) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *scriptSends) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}

func (h *scriptSends) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.count(cmd)
		}
		return next(ctx, cmds)
	}
}

// countSends has cc count the scripts it sends to each node, from its first node on.
func countSends(cc *redis.ClusterClient) *scriptSends {
	h := &scriptSends{}
	cc.OnNewNode(func(node *redis.Client) { node.AddHook(h) })
	return h
}

// storeOn returns a RedisStore on client, pipelined or not.
func storeOn(t *testing.T, client redis.UniversalClient, pipelined bool) limiter.Store {
	t.Helper()
	rs, err := limiter.NewRedisStore(client, limiter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !pipelined {
		return rs
	}
	ps, err := limiter.NewPipelinedStore(t.Context(), rs, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// testClusterSendsScriptOnce: a script whose reply times out on a Redis Cluster is not sent
// again. go-redis's cluster client retries a read timeout within its redirect loop (the same
// node, then another) whatever MaxRetries says, and remaps a pipeline for another attempt;
// the script may have run, so a second send could apply it twice. Every master holds its
// scripts (CLIENT PAUSE WRITE, ended by the test, not by time), so each attempt times out;
// the nodes' hooks count the attempts.
func testClusterSendsScriptOnce(t *testing.T, c *redistest.Cluster) {
	ctx := context.Background()
	for _, pipelined := range []bool{false, true} {
		client, err := limiter.NewRedisClient(c.URL + "&read_timeout=100ms")
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		sends := countSends(client.(*redis.ClusterClient))
		s := storeOn(t, client, pipelined)
		masters := make([]*redis.Client, len(c.Addrs))
		for i, a := range c.Addrs {
			masters[i] = redis.NewClient(&redis.Options{Addr: a})
			defer masters[i].Close()
			if err := masters[i].Do(ctx, "CLIENT", "PAUSE", "600000", "WRITE").Err(); err != nil {
				t.Fatal(err)
			}
		}
		_, err = s.Spend(ctx, limiter.NewKey("paused-"+strconv.FormatBool(pipelined), 10), 1, time.Time{})
		for _, m := range masters {
			if err := m.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err == nil {
			t.Fatalf("pipelined %v: Spend answered while every master held its scripts", pipelined)
		}
		if n := sends.n.Load(); n != 1 {
			t.Fatalf("pipelined %v: a script whose reply timed out was sent %d times, want once (%v)", pipelined, n, err)
		}
	}
}

// testClusterFollowsRedirects: scripts sent at most once still follow MOVED (the script did
// not run where it was sent): a client whose slot map names one master for every slot reaches
// the others through their redirects.
func testClusterFollowsRedirects(t *testing.T, c *redistest.Cluster) {
	ctx := context.Background()
	for _, pipelined := range []bool{false, true} {
		cc := redis.NewClusterClient(&redis.ClusterOptions{
			ClusterSlots: func(context.Context) ([]redis.ClusterSlot, error) {
				return []redis.ClusterSlot{{Start: 0, End: 16383, Nodes: []redis.ClusterNode{{Addr: c.Addrs[0]}}}}, nil
			},
			MaxRetries: -1,
		})
		defer cc.Close()
		sends := countSends(cc)
		s := storeOn(t, cc, pipelined)
		const orgs = 30
		for i := range orgs {
			k := limiter.NewKey("moved-"+strconv.FormatBool(pipelined)+"-"+strconv.Itoa(i), 10)
			if d, err := s.Spend(ctx, k, 1, time.Time{}); err != nil || !d.Allowed || d.Used != 1 {
				t.Fatalf("pipelined %v: Spend through a stale slot map = %+v, %v", pipelined, d, err)
			}
		}
		if n := sends.n.Load(); n <= orgs {
			t.Fatalf("pipelined %v: %d sends for %d orgs on three masters: no redirect was met", pipelined, n, orgs)
		}
	}
}
