package redistest

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a real Redis Cluster of masters on loopback ports, stopped when the test ends.
type Cluster struct {
	// Addrs are the masters' host:port.
	Addrs []string
	// URL is a redis+cluster:// URL naming every master, for limiter.NewRedisClient.
	URL string
	// Client is connected to the cluster.
	Client *redis.ClusterClient
}

// StartCluster starts n masters (n >= 3) with cluster mode on, joins them with
// `redis-cli --cluster create`, and waits until every node reports cluster_state:ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	Binary(t, "redis-server")
	cli := Binary(t, "redis-cli")
	c := &Cluster{}
	for range n {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000")
		c.Addrs = append(c.Addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, addr := range c.Addrs {
		if err := waitClusterOK(addr, 20*time.Second); err != nil {
			t.Fatalf("cluster node %s: %v", addr, err)
		}
	}
	c.URL = "redis+cluster://" + c.Addrs[0]
	for i, a := range c.Addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		c.URL += sep + "addr=" + a
	}
	c.Client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { c.Client.Close() })
	return c
}

func waitClusterOK(addr string, timeout time.Duration) error {
	cl := redis.NewClient(&redis.Options{Addr: addr})
	defer cl.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := cl.ClusterInfo(ctx).Result()
		cancel()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = net.UnknownNetworkError("cluster_state not ok: " + strconv.Quote(firstLine(info)))
			}
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
