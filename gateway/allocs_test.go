package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// ownAllocsBudget is what the gateway may allocate per allowed call beyond what
// httputil.ReverseProxy allocates for the same call with the same transport, rewrite and
// buffer pool: identifying, pricing, debiting and the rate-limit fields together (2), the
// debit's call id (1: refunds and compensations name it), and, for a call the transport
// could resend, the context that counts its attempts (2: the value and the request's copy
// that carries it).
const ownAllocsBudget = 5

// TestHotPathAllocs holds the gateway's own allocations per allowed call (memory store, a
// canned upstream) to ownAllocsBudget.
func TestHotPathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a full run")
	}
	up, _ := url.Parse("http://upstream.invalid")
	store, err := limiter.NewMemoryStore(limiter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := orgs.Parse("allocs:limit=1000000000000000,keys=allocs-key")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := orgs.NewDirectory(list)
	if err != nil {
		t.Fatal(err)
	}
	costs, err := costtable.Builtin("zoho-crm")
	if err != nil {
		t.Fatal(err)
	}
	gw, err := New(Config{
		Upstream: up, Transport: cannedTransport{}, Store: store, Costs: costs, Orgs: dir,
		LimitOf: func(o *orgs.Org) int64 { return o.Limit }, Clock: time.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
		},
		Transport:  cannedTransport{},
		BufferPool: newBufferPool(),
	}
	perCall := func(h http.Handler) float64 {
		return testing.AllocsPerRun(200, func() {
			req := httptest.NewRequest("GET", "/crm/v2/users", nil)
			req.Header["X-Api-Key"] = []string{"allocs-key"}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
		})
	}
	base, ours := perCall(bare), perCall(gw)
	t.Logf("allocations per call: ReverseProxy alone %.0f, gateway %.0f", base, ours)
	if own := ours - base; own > ownAllocsBudget+raceAllocSlack {
		t.Errorf("the gateway allocates %.0f times per allowed call beyond the proxy's %.0f; budget %d", own, base, ownAllocsBudget)
	}
}
