package gateway

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/internal/redistest"
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
	store, err := limiter.NewMemoryStore(limiter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The canned answer, read in one go, and one with a declared length that arrives in two
	// reads, which the flush policy flushes in between.
	for _, tr := range []http.RoundTripper{cannedTransport{}, piecesTransport{}} {
		if own, base := ownAllocs(t, tr, store, true); own > ownAllocsBudget+raceAllocSlack {
			t.Errorf("%T: the gateway allocates %.0f times per allowed call beyond the proxy's %.0f; budget %d", tr, own, base, ownAllocsBudget)
		}
	}
}

// redisAllocsBudget is what the Redis store's debit may allocate per allowed call beyond
// ownAllocsBudget, go-redis's work included: the StoreTimeout context and its timer (5),
// go-redis's command, its reply and its pool's check of the connection (5), and spend.lua's
// command with the values boxed into it (the call id, the rule: 3; the org's limit is boxed
// once, with its key).
const redisAllocsBudget = 13

// TestHotPathAllocsRedis holds the gateway's own allocations per allowed call with the Redis
// store, as cmd/creditgate wires it, to ownAllocsBudget plus redisAllocsBudget.
func TestHotPathAllocsRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a full run")
	}
	srv := redistest.Start(t)
	client, err := limiter.NewRedisClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	store, err := limiter.NewRedisStore(client, limiter.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.LoadScripts(t.Context()); err != nil {
		t.Fatal(err)
	}
	if own, base := ownAllocs(t, cannedTransport{}, store, false); own > ownAllocsBudget+redisAllocsBudget+raceAllocSlack {
		t.Errorf("the gateway allocates %.0f times per allowed call beyond the proxy's %.0f with the Redis store; budget %d",
			own, base, ownAllocsBudget+redisAllocsBudget)
	}
}

// ownAllocs returns the allocations per allowed call of a gateway on store over tr beyond
// those of httputil.ReverseProxy with the same transport, rewrite and buffer pool, and the
// proxy's. inProcess: the store answers within the process (the memory store), and the
// gateway's clock decides; otherwise the store's clock does, as in production.
func ownAllocs(t *testing.T, tr http.RoundTripper, store Store, inProcess bool) (own, base float64) {
	t.Helper()
	up, _ := url.Parse("http://upstream.invalid")
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
	cfg := Config{
		Upstream: up, Transport: tr, Store: store, StoreInProcess: inProcess, Costs: costs, Orgs: dir,
		LimitOf: func(o *orgs.Org) int64 { return o.Limit },
	}
	if inProcess {
		cfg.Clock = time.Now
	}
	gw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
		},
		Transport:  tr,
		BufferPool: newBufferPool(),
	}
	// The least of three counts: AllocsPerRun counts the whole process's allocations, and
	// goroutines other tests left behind can add one to a count.
	perCall := func(h http.Handler) float64 {
		least := math.Inf(1)
		for range 3 {
			least = min(least, testing.AllocsPerRun(200, func() {
				req := httptest.NewRequest("GET", "/crm/v2/users", nil)
				req.Header["X-Api-Key"] = []string{"allocs-key"}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					t.Fatalf("status %d", w.Code)
				}
			}))
		}
		return least
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
	return ours - base, base
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
