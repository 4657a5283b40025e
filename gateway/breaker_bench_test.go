package gateway

import (
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/orgs"
)

// BenchmarkGatewayBreakerOpen is a call on a dead store once the breaker is open: decided by
// the fail mode (open: forwarded uncharged) without touching the store. Compare with
// BenchmarkGatewayAllowed.
func BenchmarkGatewayBreakerOpen(b *testing.B) {
	up, _ := url.Parse("http://upstream.invalid")
	list, _ := orgs.Parse("bench:limit=1000000000000,keys=bench-key")
	dir, _ := orgs.NewDirectory(list)
	costs, _ := costtable.Builtin("zoho-crm")
	gw, err := New(Config{
		Upstream: up, Transport: cannedTransport{}, Store: brokenStore{}, StoreLacks: lacksAll, Costs: costs, Orgs: dir,
		LimitOf:  func(o *orgs.Org) int64 { return o.Limit },
		FailOpen: true, BreakerFailures: 1, BreakerCooldown: time.Hour,
	})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/crm/v2/users", nil)
	req.Header.Set("X-Api-Key", "bench-key")
	gw.ServeHTTP(httptest.NewRecorder(), req) // the one failure that opens the breaker
	if !gw.BreakerOpen() {
		b.Fatal("breaker not open")
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", "/crm/v2/users", nil)
			req.Header.Set("X-Api-Key", "bench-key")
			w := httptest.NewRecorder()
			gw.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}
