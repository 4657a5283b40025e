package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/redistest"
)

// TestPeersLimitPerKey runs each peer found (as the bench finds them) with the bench's
// configuration but a limit of 3 calls a minute: a key's fourth call is refused with 429
// while another key's first still passes, so the peer limits, and per X-Api-Key. Then with
// the bench's limit, 300 calls of one key all pass.
func TestPeersLimitPerKey(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"users":[]}`)
	}))
	defer upstream.Close()
	up := strings.TrimPrefix(upstream.URL, "http://")
	small := peerLimit{calls: 3, window: time.Minute}
	var traefikRedis *redistest.Server // the Redis of the traefik-redis case

	traefik, err := findPeer("", "CREDITGATE_BENCH_TRAEFIK", "traefik")
	if err != nil {
		t.Fatal(err)
	}
	caddy, err := findPeer("", "CREDITGATE_BENCH_CADDY", "caddy")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		bin   string
		never peerLimit // the bench's limit
		start func(t *testing.T, lim peerLimit) (*proc, error)
	}{
		{"traefik-redis", traefik, traefikNeverReached, func(t *testing.T, lim peerLimit) (*proc, error) {
			traefikRedis = redistest.Start(t)
			return startTraefik(traefik, t.TempDir(), "traefik-redis", up, traefikRedis.Addr, lim, 32)
		}},
		{"traefik-memory", traefik, traefikNeverReached, func(t *testing.T, lim peerLimit) (*proc, error) {
			return startTraefik(traefik, t.TempDir(), "traefik-memory", up, "", lim, 32)
		}},
		{"caddy", caddy, caddyNeverReached, func(t *testing.T, lim peerLimit) (*proc, error) {
			if !caddyHasRateLimit(caddy) {
				t.Skipf("%s has no rate_limit handler: bench/peers/build.sh builds one", caddy)
			}
			return startCaddy(caddy, t.TempDir(), "caddy", up, lim, 32)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.bin == "" {
				t.Skip("binary not found (PATH, CREDITGATE_BENCH_TRAEFIK, CREDITGATE_BENCH_CADDY): bench/peers/build.sh DIR builds them")
			}
			p, err := tt.start(t, small)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.stop)
			url := "http://" + p.addr + benchPath
			c := newClient(1)
			for i := range small.calls {
				if got := status(t, c, url, "key-a"); got != http.StatusOK {
					t.Fatalf("call %d of key-a: status %d, want 200", i+1, got)
				}
			}
			if got := status(t, c, url, "key-a"); got != http.StatusTooManyRequests {
				t.Fatalf("call %d of key-a: status %d, want 429", small.calls+1, got)
			}
			if got := status(t, c, url, "key-b"); got != http.StatusOK {
				t.Fatalf("first call of key-b after key-a's limit: status %d, want 200", got)
			}
			if tt.name == "traefik-redis" {
				// The buckets are in Redis, one per API key.
				for _, key := range []string{"key-a", "key-b"} {
					keys, err := traefikRedis.Client.Keys(context.Background(), "rate:*:"+key).Result()
					if err != nil || len(keys) != 1 {
						t.Fatalf("Traefik's keys in Redis for %s: %v (%v), want one", key, keys, err)
					}
				}
			}
			p.stop()

			p, err = tt.start(t, tt.never)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.stop)
			url = "http://" + p.addr + benchPath
			for i := range 300 {
				if got := status(t, c, url, "key-a"); got != http.StatusOK {
					t.Fatalf("call %d of key-a with the bench's limit: status %d, want 200", i+1, got)
				}
			}
		})
	}
}

func status(t *testing.T, c *http.Client, url, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-Api-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
