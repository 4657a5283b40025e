package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/creditgate/creditgate/costtable"
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
