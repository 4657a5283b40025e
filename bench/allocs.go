package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/gateway"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// cannedTransport answers at once, so allocations are the proxy's, not a network's.
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

type allocs struct {
	name          string
	allocs, bytes int64
	nsPerOp       int64
}

// measureAllocs runs one request at a time through h (httptest request and recorder, a
// canned upstream) and reports allocations per request.
func measureAllocs(name string, h http.Handler) allocs {
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest("GET", benchPath, nil)
			req.Header.Set("X-Api-Key", benchKey)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
	return allocs{name: name, allocs: r.AllocsPerOp(), bytes: r.AllocedBytesPerOp(), nsPerOp: r.NsPerOp()}
}

// hotPathAllocs compares a stock ReverseProxy, the same with the gateway's buffer pool, and the
// gateway (memory store), all over the canned transport.
func hotPathAllocs() ([]allocs, error) {
	up, _ := url.Parse("http://upstream.invalid")
	stock := httputil.NewSingleHostReverseProxy(up)
	stock.Transport = cannedTransport{}
	tuned := httputil.NewSingleHostReverseProxy(up)
	tuned.Transport = cannedTransport{}
	tuned.BufferPool = &bufferPool{p: sync.Pool{New: func() any { return make([]byte, 32<<10) }}}

	store, err := limiter.NewMemoryStore(limiter.Options{})
	if err != nil {
		return nil, err
	}
	list, err := orgs.Parse("bench:limit=1000000000000000,keys=" + benchKey)
	if err != nil {
		return nil, err
	}
	dir, err := orgs.NewDirectory(list)
	if err != nil {
		return nil, err
	}
	costs, err := costtable.Builtin("zoho-crm")
	if err != nil {
		return nil, err
	}
	gw, err := gateway.New(gateway.Config{
		Upstream: up, Transport: cannedTransport{}, Store: store, StoreInProcess: true, Costs: costs, Orgs: dir,
		LimitOf: func(o *orgs.Org) int64 { return o.Limit },
	})
	if err != nil {
		return nil, err
	}
	return []allocs{
		measureAllocs("ReverseProxy, stock", stock),
		measureAllocs("ReverseProxy, BufferPool", tuned),
		measureAllocs("gateway, memory store", gw),
	}, nil
}
