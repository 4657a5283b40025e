package main

// Costs settled from the upstream's answer, end to end: the real binary, both stores, two
// gateways racing on one Redis, and a 200 MB counted answer.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/creditgate/creditgate/internal/redistest"
)

const settleCostTable = `rules:
  - name: list_leads
    method: GET
    path: /crm/v8/Leads
    cost: 1
    response:
      count: data
      per: 200
      max: 20
  - name: chat
    method: POST
    path: /v1/chat/completions
    cost: 100
    response:
      number: usage.total_tokens
      per: 1000
  - name: report
    method: GET
    path: /reports/*
    cost: 5
    response:
      header: X-Credits-Cost
`

// settleAPI answers the calls of settleCostTable: ?n= records, ?tokens= tokens (?sse=1 as an
// event stream), ?cost= in the header; ?mb= streams that many megabytes of records.
func settleAPI(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.URL.Path == "/crm/v8/Leads" && q.Get("mb") != "":
			mb, _ := strconv.Atoi(q.Get("mb"))
			record := `{"id":1234567,"Last_Name":"Lead","Email":"lead@example.com","Tags":["a","b"]},`
			chunk := []byte(strings.Repeat(record, (64<<10)/len(record)))
			_, _ = io.WriteString(w, `{"data":[`)
			for sent := 0; sent < mb<<20; sent += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			_, _ = io.WriteString(w, `{"id":0}]}`)
		case r.URL.Path == "/crm/v8/Leads":
			n, _ := strconv.Atoi(q.Get("n"))
			var b strings.Builder
			b.WriteString(`{"data":[`)
			for i := range n {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"id":%d}`, i)
			}
			b.WriteString(`],"info":{"count":` + strconv.Itoa(n) + `}}`)
			_, _ = io.WriteString(w, b.String())
		case r.URL.Path == "/v1/chat/completions" && q.Get("sse") == "1":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n")
			w.(http.Flusher).Flush()
			fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"total_tokens\":%s}}\n\ndata: [DONE]\n\n", q.Get("tokens"))
		case r.URL.Path == "/v1/chat/completions":
			fmt.Fprintf(w, `{"choices":[{"message":{"content":"Hi"}}],"usage":{"prompt_tokens":9,"total_tokens":%s}}`, q.Get("tokens"))
		case strings.HasPrefix(r.URL.Path, "/reports/"):
			w.Header().Set("X-Credits-Cost", q.Get("cost"))
			_, _ = io.WriteString(w, `{"report":"ready"}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func settleTableFile(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "costs.yaml")
	if err := os.WriteFile(path, []byte(settleCostTable), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSettleEndToEnd is acceptance 1: through real HTTP and both stores, list answers of 0,
// 1, 200, 201 and 5,000 records settle to 1, 1, 1, 2 and 20 credits, an LLM answer with
// 12,345 tokens and an event stream ending with its usage to 13, and a header-priced call to
// the header's value, which the client never sees.
func TestSettleEndToEnd(t *testing.T) {
	stores := map[string]func(t *testing.T) map[string]string{
		"memory": func(t *testing.T) map[string]string { return nil },
		"redis": func(t *testing.T) map[string]string {
			return map[string]string{"CREDITGATE_REDIS_URL": redistest.Start(t).URL}
		},
	}
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			vars := map[string]string{
				"CREDITGATE_UPSTREAM_URL":    settleAPI(t).URL,
				"CREDITGATE_COST_TABLE_FILE": settleTableFile(t),
				"CREDITGATE_ORGS":            "acme:limit=100000,keys=acme-key",
			}
			for k, v := range store(t) {
				vars[k] = v
			}
			gw := startGateway(t, vars)
			tests := []struct {
				method, path string
				want         int64
			}{
				{"GET", "/crm/v8/Leads?n=0", 1},
				{"GET", "/crm/v8/Leads?n=1", 1},
				{"GET", "/crm/v8/Leads?n=200", 1},
				{"GET", "/crm/v8/Leads?n=201", 2},
				{"GET", "/crm/v8/Leads?n=5000", 20},
				{"POST", "/v1/chat/completions?tokens=12345", 13},
				{"POST", "/v1/chat/completions?tokens=12345&sse=1", 13},
				{"GET", "/reports/2026/q1?cost=7", 7},
			}
			var used int64
			for _, tt := range tests {
				resp, body := call(t, http.DefaultClient, tt.method, gw.base+tt.path, "acme-key")
				if resp.StatusCode != 200 {
					t.Fatalf("%s %s: %d %s", tt.method, tt.path, resp.StatusCode, body)
				}
				if _, ok := resp.Header["X-Credits-Cost"]; ok {
					t.Errorf("%s %s: the client saw X-Credits-Cost", tt.method, tt.path)
				}
				if strings.HasPrefix(tt.path, "/reports/") && resp.Header.Get("X-Credits-Charged") != "7" {
					t.Errorf("header-priced call: X-Credits-Charged %q, want the settled 7", resp.Header.Get("X-Credits-Charged"))
				}
				used += tt.want
				if got := usedCredits(t, gw.base, "acme-key"); got != used {
					t.Errorf("%s %s: used %d, want %d", tt.method, tt.path, got, used)
				}
			}
		})
	}
}

// TestSettleRacingGateways is acceptance 2: two gateways on one Redis race settle-priced
// calls of one org with add-ons; the window's used credits and the add-on meter (the bill)
// equal the sum of the settled costs exactly.
func TestSettleRacingGateways(t *testing.T) {
	srv := redistest.Start(t)
	const free = 100
	vars := billingVars(settleAPI(t).URL, srv.URL, free)
	vars["CREDITGATE_COST_TABLE_FILE"] = settleTableFile(t)
	vars["CREDITGATE_LOG_LEVEL"] = "warn"
	gws := []*process{startGateway(t, vars), startGateway(t, vars)}
	if s, body := adminDo(t, "PUT", gws[0].admin+"/admin/v1/orgs/acme/addon", e2eAdminToken, `{"limit":100000}`); s != 200 {
		t.Fatalf("PUT addon: %d %s", s, body)
	}
	var want atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				gw := gws[(w+i)%2]
				var path, method string
				var cost int64
				switch k := (w*25 + i) % 3; k {
				case 0:
					n := (w*25 + i) * 37 % 4500
					method, path, cost = "GET", "/crm/v8/Leads?n="+strconv.Itoa(n), min(20, max(1, int64((n+199)/200)))
				case 1:
					tokens := (w*25 + i) * 911
					method, path, cost = "POST", "/v1/chat/completions?tokens="+strconv.Itoa(tokens), max(1, int64((tokens+999)/1000))
				default:
					c := (w + i) % 9
					method, path, cost = "GET", "/reports/r?cost="+strconv.Itoa(c), int64(c)
				}
				resp, body := call(t, http.DefaultClient, method, gw.base+path, "acme-key")
				if resp.StatusCode != 200 {
					t.Errorf("%s %s: %d %s", method, path, resp.StatusCode, body)
					return
				}
				want.Add(cost)
			}
		})
	}
	wg.Wait()
	if got := usedCredits(t, gws[1].base, "acme-key"); got != want.Load() {
		t.Errorf("window used %d, want the sum of settled costs %d", got, want.Load())
	}
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(srv.URL, "redis://")})
	defer rdb.Close()
	meter, err := rdb.HGetAll(context.Background(), "cg:{acme}:meter").Result()
	if err != nil {
		t.Fatal(err)
	}
	var billed int64
	for _, v := range meter {
		n, _ := strconv.ParseInt(v, 10, 64)
		billed += n
	}
	if billed != want.Load()-free {
		t.Errorf("add-on credits metered %d, want %d (settled %d, %d free)", billed, want.Load()-free, want.Load(), free)
	}
}

// TestSettleStreamsLargeAnswer is acceptance 3: a 200 MB answer counted through the built
// binary (built without -race by TestMain) grows the gateway's resident memory by less than
// 16 MiB.
func TestSettleStreamsLargeAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 200 MB")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads the gateway's memory from /proc")
	}
	gw := startGateway(t, map[string]string{
		"CREDITGATE_UPSTREAM_URL":    settleAPI(t).URL,
		"CREDITGATE_COST_TABLE_FILE": settleTableFile(t),
		"CREDITGATE_ORGS":            "acme:limit=100000,keys=acme-key",
	})
	pid := gw.cmd.Process.Pid
	call(t, http.DefaultClient, "GET", gw.base+"/crm/v8/Leads?n=10", "acme-key") // warm up
	before, err := procStatusBytes(pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", gw.base+"/crm/v8/Leads?mb=200", nil)
	req.Header.Set("Authorization", "Bearer acme-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n < 200<<20 {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	peak, err := procStatusBytes(pid, "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s counted; RSS %s before, peak %s: growth %s; trailer X-Credits-Charged %q",
		mib(n), mib(before), mib(peak), mib(peak-before), resp.Trailer.Get("X-Credits-Charged"))
	if peak-before >= 16<<20 {
		t.Errorf("RSS grew by %s streaming a 200 MB answer, want under 16 MiB", mib(peak-before))
	}
	if got := usedCredits(t, gw.base, "acme-key"); got != 1+20 {
		t.Errorf("used %d, want 1 (warm-up) + 20 (max)", got)
	}
	if got := resp.Trailer.Get("X-Credits-Charged"); got != "20" {
		t.Errorf("trailer X-Credits-Charged %q, want 20", got)
	}
}
