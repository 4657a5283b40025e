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
	// The canned answer, read in one go, and one with a declared length that arrives in two
	// reads, which the flush policy flushes in between.
	for _, tr := range []http.RoundTripper{cannedTransport{}, piecesTransport{}} {
		gw, err := New(Config{
			Upstream: up, Transport: tr, Store: store, StoreInProcess: true, Costs: costs, Orgs: dir,
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
			Transport:  tr,
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
		// The second answer is flushed between its pieces, so its count includes the flush.
		w := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/crm/v2/users", nil)
		req.Header["X-Api-Key"] = []string{"allocs-key"}
		gw.ServeHTTP(w, req)
		if _, pieces := tr.(piecesTransport); w.Flushed != pieces {
			t.Fatalf("%T: flushed %v", tr, w.Flushed)
		}
		base, ours := perCall(bare), perCall(gw)
		t.Logf("%T: allocations per call: ReverseProxy alone %.0f, gateway %.0f", tr, base, ours)
		if own := ours - base; own > ownAllocsBudget+raceAllocSlack {
			t.Errorf("%T: the gateway allocates %.0f times per allowed call beyond the proxy's %.0f; budget %d", tr, own, base, ownAllocsBudget)
		}
	}
}

// piecesTransport answers with a declared length and a body that comes in two reads.
type piecesTransport struct{}

func (piecesTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return &http.Response{
		StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}, "Content-Length": {"11"}},
		ContentLength: 11,
		Body:          io.NopCloser(io.MultiReader(strings.NewReader(`{"ok":`), strings.NewReader(`true}`))),
		Request:       r,
	}, nil
}
