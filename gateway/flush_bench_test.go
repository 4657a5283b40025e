package gateway

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// countingListener counts the writes on the connections it accepts: each is a system call.
type countingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.writes}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// BenchmarkFlushPolicy drives, over loopback, a ReverseProxy with the gateway's transport and
// buffer pool, and the gateway (memory store) with its flush policy, without it, and with
// ReverseProxy's FlushInterval -1 (a flush after every write) instead, with a small
// answer and a large one from a real upstream. It reports the writes to the client's
// connection per call (system calls) besides time and allocations. Compare the gateway's
// ns/op with the proxy's in the same run:
//
//	go test -run '^$' -bench FlushPolicy -count 5 ./gateway
func BenchmarkFlushPolicy(b *testing.B) {
	small := []byte(`{"users":[{"id":"1","full_name":"Bench User"}],"info":{"count":1}}`)
	large := []byte(strings.Repeat("0123456789abcdef", 256<<10/16)) // 256 KiB
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := small
		if r.URL.Query().Has("large") {
			body = large
		}
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
		_, _ = w.Write(body)
	}))
	defer up.Close()
	upURL, _ := url.Parse(up.URL)

	store, _ := limiter.NewMemoryStore(limiter.Options{})
	list, _ := orgs.Parse("bench:limit=1000000000000000,keys=bench-key")
	dir, _ := orgs.NewDirectory(list)
	costs, _ := costtable.Builtin("zoho-crm")
	gw, err := New(Config{
		Upstream: upURL, Store: store, StoreInProcess: true, Costs: costs, Orgs: dir,
		LimitOf: func(o *orgs.Org) int64 { return o.Limit },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer gw.Close()
	tuned := httputil.NewSingleHostReverseProxy(upURL)
	tuned.Transport = NewTransport(time.Minute)
	tuned.BufferPool = newBufferPool()

	client := &http.Client{Transport: NewTransport(time.Minute)}
	for _, size := range []string{"small", "256KiB"} {
		for _, tt := range []struct {
			name     string
			h        http.Handler
			policy   bool
			interval time.Duration // the gateway's ReverseProxy.FlushInterval
		}{
			{"proxy-tuned", tuned, true, 0},
			{"gateway-without-policy", gw, false, 0},
			{"gateway-flush-every-write", gw, false, -1},
			{"gateway", gw, true, 0},
		} {
			b.Run(size+"/"+tt.name, func(b *testing.B) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				cl := &countingListener{Listener: ln}
				srv := httptest.NewUnstartedServer(tt.h)
				srv.Listener = cl
				srv.Start()
				defer srv.Close()
				proxy := gw.routes.Load().routes[0].proxy
				flushPolicy, proxy.FlushInterval = tt.policy, tt.interval
				defer func() { flushPolicy, proxy.FlushInterval = true, 0 }()
				target := srv.URL + "/crm/v2/users"
				if size != "small" {
					target += "?large=1"
				}
				b.ReportAllocs()
				cl.writes.Store(0)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						req, _ := http.NewRequest("GET", target, nil)
						req.Header["X-Api-Key"] = []string{"bench-key"}
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Errorf("status %d", resp.StatusCode)
							return
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(cl.writes.Load())/float64(b.N), "writes/op")
			})
		}
	}
}
