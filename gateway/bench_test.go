package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// cannedTransport answers every call at once, so a benchmark measures the gateway, not a
// network.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return &http.Response{
		StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"application/json"}},
		Body:    io.NopCloser(strings.NewReader(`{"ok":true}`)),
		Request: r,
	}, nil
}

func benchGateway(b *testing.B, bare bool) {
	up, _ := url.Parse("http://upstream.invalid")
	var h http.Handler
	if bare {
		h = httputilProxy(up)
	} else {
		store, _ := limiter.NewMemoryStore(limiter.Options{})
		list, _ := orgs.Parse("bench:limit=1000000000000,keys=bench-key")
		dir, _ := orgs.NewDirectory(list)
		costs, _ := costtable.Builtin("zoho-crm")
		gw, err := New(Config{
			Upstream: up, Transport: cannedTransport{}, Store: store, StoreInProcess: true, Costs: costs, Orgs: dir,
			LimitOf: func(o *orgs.Org) int64 { return o.Limit },
			Clock:   time.Now,
		})
		if err != nil {
			b.Fatal(err)
		}
		h = gw
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", "/crm/v2/users", nil)
			req.Header.Set("X-Api-Key", "bench-key")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}

// BenchmarkBareProxy is the baseline: httputil.ReverseProxy alone over the same transport.
func BenchmarkBareProxy(b *testing.B) { benchGateway(b, true) }

// BenchmarkGatewayAllowed is an allowed call through the whole gateway (memory store).
func BenchmarkGatewayAllowed(b *testing.B) { benchGateway(b, false) }

func httputilProxy(up *url.URL) http.Handler {
	p := httputil.NewSingleHostReverseProxy(up)
	p.Transport = cannedTransport{}
	return p
}

// BenchmarkGatewayRedisAllowed is an allowed call through the whole gateway with the Redis
// store, as cmd/creditgate wires it (NewRedisClient, the server's clock, StoreTimeout), against
// a real redis-server on loopback. cpu-ns/op is this process's CPU per call (the server's is
// its own process's): the gateway's and go-redis's work, the part a load test cannot split.
func BenchmarkGatewayRedisAllowed(b *testing.B) {
	srv := redistest.Start(b)
	client, err := limiter.NewRedisClient(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	store, err := limiter.NewRedisStore(client, limiter.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := store.LoadScripts(context.Background()); err != nil {
		b.Fatal(err)
	}
	up, _ := url.Parse("http://upstream.invalid")
	list, _ := orgs.Parse("bench:limit=1000000000000,keys=bench-key")
	dir, _ := orgs.NewDirectory(list)
	costs, _ := costtable.Builtin("zoho-crm")
	gw, err := New(Config{
		Upstream: up, Transport: cannedTransport{}, Store: store, Costs: costs, Orgs: dir,
		StoreTimeout: 10 * time.Second, // a loaded machine is no store failure
		LimitOf:      func(o *orgs.Org) int64 { return o.Limit },
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(gw.Close)
	b.SetParallelism(8) // calls wait on Redis: keep the Ps busy
	b.ReportAllocs()
	cpu := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", "/crm/v2/users", nil)
			req.Header.Set("X-Api-Key", "bench-key")
			w := httptest.NewRecorder()
			gw.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time (user and system) this process has used, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
