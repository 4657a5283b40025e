package main

// End-to-end tests: the real binary, real listeners, real redis-server.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/metricstest"
	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
)

var binary string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "creditgate-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "creditgate")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build creditgate: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running gateway binary.
type process struct {
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:port
	admin  string
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cleanEnv is the test's environment without any CREDITGATE_ variable, plus vars.
func cleanEnv(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CREDITGATE_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// startGateway runs the binary with vars on free loopback ports and waits until it is ready.
func startGateway(t *testing.T, vars map[string]string) *process {
	t.Helper()
	port, adminPort := redistest.FreePort(t), redistest.FreePort(t)
	all := map[string]string{
		"CREDITGATE_LISTEN_ADDR": "127.0.0.1:" + strconv.Itoa(port),
		"CREDITGATE_ADMIN_ADDR":  "127.0.0.1:" + strconv.Itoa(adminPort),
		"CREDITGATE_LOG_LEVEL":   "warn",
	}
	for k, v := range vars {
		all[k] = v
	}
	p := &process{
		cmd:    exec.Command(binary),
		base:   "http://" + all["CREDITGATE_LISTEN_ADDR"],
		admin:  "http://" + all["CREDITGATE_ADMIN_ADDR"],
		stdout: &syncBuffer{},
		stderr: &syncBuffer{},
		done:   make(chan error, 1),
	}
	p.cmd.Env = cleanEnv(all)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("gateway stderr:\n%s", p.stderr.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(p.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("gateway exited at start: %v\n%s", err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway not ready after 15s:\n%s", p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// costUpstream is an API that sums, independently of the gateway, the credits the calls it
// received are worth.
type costUpstream struct {
	*httptest.Server
	credits atomic.Int64
	calls   atomic.Int64
	delay   time.Duration
	arrived chan struct{} // receives (without blocking) when a call reaches the upstream
}

// testCosts is the reference price list of the paths the tests use.
var testCosts = map[string]int64{
	"GET /crm/v2/users":                    1,
	"GET /crm/v3/Leads/deleted":            2,
	"GET /crm/v8/Leads?cvid=7":             3,
	"POST /crm/v2/Leads/1/actions/convert": 5,
	"POST /crm/bulk/v2/read":               50,
}

func newCostUpstream(t *testing.T, delay time.Duration) *costUpstream {
	u := &costUpstream{delay: delay, arrived: make(chan struct{}, 1)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case u.arrived <- struct{}{}:
		default:
		}
		if u.delay > 0 {
			time.Sleep(u.delay)
		}
		call := r.Method + " " + r.URL.Path
		if r.URL.RawQuery != "" {
			call += "?" + r.URL.RawQuery
		}
		c, ok := testCosts[call]
		if !ok {
			c = 1
		}
		u.credits.Add(c)
		u.calls.Add(1)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func call(t *testing.T, client *http.Client, method, url, key string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestTwoGatewaysShareOneRedis hammers two gateway processes sharing one Redis (a single
// server, then a three-master Redis Cluster) with three orgs whose keys live on the three
// different masters: per org, admitted credits never exceed the limit, and equal what Redis
// holds and what the upstream received.
func TestTwoGatewaysShareOneRedis(t *testing.T) {
	type backend struct {
		url  string
		held func(key string) (int64, error)
		vars map[string]string // more settings for both gateways
	}
	backends := []struct {
		name  string
		start func(t *testing.T) backend
	}{
		{"server", func(t *testing.T) backend {
			srv := redistest.Start(t)
			return backend{srv.URL, func(k string) (int64, error) { return srv.Client.HGet(context.Background(), k, "used").Int64() }, nil}
		}},
		{"server-pipelined", func(t *testing.T) backend {
			srv := redistest.Start(t)
			return backend{srv.URL, func(k string) (int64, error) { return srv.Client.HGet(context.Background(), k, "used").Int64() },
				map[string]string{"CREDITGATE_REDIS_PIPELINE": "true"}}
		}},
		{"cluster", func(t *testing.T) backend {
			c := redistest.StartCluster(t, 3)
			checkSpread(t, c, hammerOrgs)
			return backend{c.URL, func(k string) (int64, error) { return c.Client.HGet(context.Background(), k, "used").Int64() }, nil}
		}},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			b := be.start(t)
			hammer(t, b.url, b.held, b.vars)
		})
	}
}

// hammerOrgs hash to slots 865, 8623 and 14438: one on each master of a three-master cluster.
var hammerOrgs = []string{"alpha", "bravo", "echo"}

// checkSpread fails unless the orgs' keys are served by as many different masters as there
// are orgs, so the cluster test exercises every master.
func checkSpread(t *testing.T, c *redistest.Cluster, orgIDs []string) {
	t.Helper()
	ctx := context.Background()
	slots, err := c.Client.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	masters := map[string]string{}
	for _, id := range orgIDs {
		for _, k := range limiter.NewRedisKeys(id).All() {
			slot, err := c.Client.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range slots {
				if int64(r.Start) <= slot && slot <= int64(r.End) {
					if prev, ok := masters[id]; ok && prev != r.Nodes[0].Addr {
						t.Fatalf("org %s has keys on two masters (%s, %s): its hash tag is broken", id, prev, r.Nodes[0].Addr)
					}
					masters[id] = r.Nodes[0].Addr
				}
			}
		}
	}
	distinct := map[string]bool{}
	for _, a := range masters {
		distinct[a] = true
	}
	t.Logf("orgs on masters: %v", masters)
	if len(masters) != len(orgIDs) || len(distinct) != len(orgIDs) {
		t.Fatalf("orgs %v are on %d masters (%v), want %d", orgIDs, len(distinct), masters, len(orgIDs))
	}
}

func hammer(t *testing.T, redisURL string, held func(key string) (int64, error), more map[string]string) {
	const limit = 1500
	orgIDs := hammerOrgs
	up := newCostUpstream(t, 0)
	var spec []string
	for _, id := range orgIDs {
		spec = append(spec, id+":limit="+strconv.Itoa(limit)+",keys="+id+"-key")
	}
	vars := map[string]string{
		"CREDITGATE_UPSTREAM_URL": up.URL,
		"CREDITGATE_REDIS_URL":    redisURL,
		"CREDITGATE_ORGS":         strings.Join(spec, ";"),
	}
	maps.Copy(vars, more)
	gws := []*process{startGateway(t, vars), startGateway(t, vars)}

	paths := make([]string, 0, len(testCosts))
	for k := range testCosts {
		paths = append(paths, k)
	}
	var (
		admitted [3]atomic.Int64
		calls    [3]atomic.Int64
		rejected atomic.Int64
		wg       sync.WaitGroup
		failures = make(chan string, 32)
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for w := range 18 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			org := w % len(orgIDs)
			for i := 0; i < 300 && ctx.Err() == nil; i++ { // bounded: 18×300 calls at most
				method, path, _ := strings.Cut(paths[(w+i)%len(paths)], " ")
				req, _ := http.NewRequestWithContext(ctx, method, gws[(w+i)%2].base+path, nil)
				req.Header.Set("X-Api-Key", orgIDs[org]+"-key")
				resp, err := client.Do(req)
				if err != nil {
					failures <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					n, err := strconv.ParseInt(resp.Header.Get("X-Credits-Charged"), 10, 64)
					if err != nil || n != testCosts[method+" "+path] {
						failures <- fmt.Sprintf("%s %s charged %q", method, path, resp.Header.Get("X-Credits-Charged"))
						return
					}
					admitted[org].Add(n)
					calls[org].Add(1)
				case 429:
					rejected.Add(1)
				default:
					failures <- fmt.Sprintf("%s %s: status %d", method, path, resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Fatal(f)
	}
	if ctx.Err() != nil {
		t.Fatal("load did not finish in 60s")
	}
	if rejected.Load() == 0 {
		t.Error("the limits were never reached")
	}
	var total, totalCalls int64
	var metricsRejected float64
	for i, id := range orgIDs {
		got := admitted[i].Load()
		total += got
		totalCalls += calls[i].Load()
		h, err := held(limiter.NewRedisKeys(id).Pos)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("org %s: admitted %d credits in %d calls; Redis holds %d", id, got, calls[i].Load(), h)
		if got > limit || got < limit-50 {
			t.Errorf("org %s: admitted %d credits, limit %d", id, got, limit)
		}
		if h != got {
			t.Errorf("org %s: admitted %d, Redis holds %d", id, got, h)
		}
		var counted, allowed float64 // what the two gateways' /metrics say
		for _, gw := range gws {
			m := metricstest.Scrape(t, gw.admin+"/metrics")
			v, _ := m.Value("creditgate_credits_debited_total", "org", id, "edition", "custom")
			counted += v
			v, _ = m.Value("creditgate_requests_total", "org", id, "edition", "custom", "outcome", "allowed")
			allowed += v
			v, _ = m.Value("creditgate_requests_total", "org", id, "edition", "custom", "outcome", "rejected")
			metricsRejected += v
		}
		if counted != float64(got) || allowed != float64(calls[i].Load()) {
			t.Errorf("org %s: admitted %d credits in %d calls, /metrics of the gateways count %v in %v", id, got, calls[i].Load(), counted, allowed)
		}
	}
	if metricsRejected != float64(rejected.Load()) {
		t.Errorf("%d calls rejected, /metrics of the gateways count %v", rejected.Load(), metricsRejected)
	}
	t.Logf("%d calls rejected; upstream received %d credits in %d calls", rejected.Load(), up.credits.Load(), up.calls.Load())
	if up.credits.Load() != total || up.calls.Load() != totalCalls {
		t.Errorf("admitted %d credits in %d calls, upstream received %d in %d", total, totalCalls, up.credits.Load(), up.calls.Load())
	}
}

// TestShortWindowRecovers: with CREDITGATE_WINDOW=4s, credits exhausted now are available
// again about 5 s later (window plus at most one bucket), never before the window has passed.
func TestShortWindowRecovers(t *testing.T) {
	stores := map[string]func(t *testing.T) string{
		"memory": func(t *testing.T) string { return "" },
		"redis":  func(t *testing.T) string { return redistest.Start(t).URL },
	}
	for name, redisURL := range stores {
		t.Run(name, func(t *testing.T) {
			up := newCostUpstream(t, 0)
			gw := startGateway(t, map[string]string{
				"CREDITGATE_UPSTREAM_URL": up.URL,
				"CREDITGATE_REDIS_URL":    redisURL(t),
				"CREDITGATE_ORGS":         "short:limit=5,keys=short-key",
				"CREDITGATE_WINDOW":       "4s",
				"CREDITGATE_BUCKET":       "1s",
			})
			first := time.Now()
			for i := range 5 {
				if resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "short-key"); resp.StatusCode != 200 {
					t.Fatalf("call %d: %d %s", i, resp.StatusCode, body)
				}
			}
			spent := time.Now()
			resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "short-key")
			if resp.StatusCode != 429 || !strings.Contains(body, "TOO_MANY_REQUESTS") {
				t.Fatalf("6th call: %d %s", resp.StatusCode, body)
			}
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 5 {
				t.Fatalf("Retry-After %q, want 1..5", resp.Header.Get("Retry-After"))
			}
			// Poll (bounded) until a call is admitted again.
			var back time.Time
			for time.Since(spent) < 10*time.Second {
				time.Sleep(100 * time.Millisecond)
				if resp, _ := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "short-key"); resp.StatusCode == 200 {
					back = time.Now()
					break
				}
			}
			if back.IsZero() {
				t.Fatal("credits not available again within 10s")
			}
			t.Logf("credits back %s after the first debit, %s after exhaustion", back.Sub(first).Round(time.Millisecond), back.Sub(spent).Round(time.Millisecond))
			if back.Sub(first) < 4*time.Second {
				t.Errorf("credits came back %s after they were spent, before the 4s window", back.Sub(first))
			}
			if back.Sub(spent) > 6500*time.Millisecond { // window 4s + bucket 1s + polling and scheduling slack
				t.Errorf("credits came back only %s after exhaustion, want about 5s", back.Sub(spent))
			}
		})
	}
}

// TestBadConfigExitsNonZero runs the binary with broken configurations.
func TestBadConfigExitsNonZero(t *testing.T) {
	deadPort := redistest.FreePort(t) // nothing listens there
	tests := []struct {
		name string
		give map[string]string
		want string
	}{
		{"unknown field", map[string]string{"CREDITGATE_ORGS": "acme:limit=5,keys=k,color=red"}, `"color"`},
		{"negative limit", map[string]string{"CREDITGATE_ORGS": "acme:limit=-5,keys=k"}, `field "limit"`},
		{"bad upstream URL", map[string]string{"CREDITGATE_UPSTREAM_URL": "localhost:9000"}, "CREDITGATE_UPSTREAM_URL"},
		{"unreachable Redis", map[string]string{"CREDITGATE_REDIS_URL": "redis://127.0.0.1:" + strconv.Itoa(deadPort)}, "Redis is not reachable"},
		{"port in use", nil, "CREDITGATE_LISTEN_ADDR"},
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{
				"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:1",
				"CREDITGATE_ORGS":         "acme:limit=5,keys=k",
				"CREDITGATE_LISTEN_ADDR":  "127.0.0.1:0",
				"CREDITGATE_ADMIN_ADDR":   "127.0.0.1:0",
			}
			if tt.give == nil {
				vars["CREDITGATE_LISTEN_ADDR"] = busy.Addr().String()
			}
			for k, v := range tt.give {
				vars[k] = v
			}
			cmd := exec.Command(binary)
			cmd.Env = cleanEnv(vars)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				ee, ok := err.(*exec.ExitError)
				if !ok || ee.ExitCode() == 0 {
					t.Fatalf("exit: %v, want a non-zero exit code", err)
				}
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("still running after 20s")
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tt.want)
			}
		})
	}
}

// TestGracefulShutdown: on SIGTERM the gateway stops accepting and finishes calls in flight.
func TestGracefulShutdown(t *testing.T) {
	up := newCostUpstream(t, 2*time.Second)
	gw := startGateway(t, map[string]string{
		"CREDITGATE_UPSTREAM_URL": up.URL,
		"CREDITGATE_ORGS":         "acme:limit=100,keys=acme-key",
	})
	type result struct {
		status int
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", gw.base+"/crm/v2/users", nil)
		req.Header.Set("X-Api-Key", "acme-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			inflight <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		inflight <- result{status: resp.StatusCode}
	}()
	// Once the call is at the upstream (which takes 2s to answer), ask the gateway to stop.
	select {
	case <-up.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the upstream")
	}
	if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The listener closes while the call is still in flight.
	closed := false
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline) && len(inflight) == 0; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(gw.base, "http://"), time.Second)
		if err != nil {
			closed = true
			break
		}
		c.Close()
	}
	if !closed {
		t.Error("the gateway still accepted connections after SIGTERM")
	}
	r := <-inflight
	if r.err != nil || r.status != 200 {
		t.Fatalf("call in flight during shutdown: status %d, err %v", r.status, r.err)
	}
	select {
	case err := <-gw.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, gw.stderr.String())
		}
		gw.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
}

var curlLine = regexp.MustCompile(`^\s*curl -i (.*)$`)

// TestDemo starts the binary with no configuration and runs the curl lines it prints.
func TestDemo(t *testing.T) {
	gw := startGateway(t, nil)
	var lines []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if out := gw.stdout.String(); strings.Contains(out, "Stop with Ctrl-C") {
			sc := bufio.NewScanner(strings.NewReader(out))
			for sc.Scan() {
				if m := curlLine.FindStringSubmatch(sc.Text()); m != nil {
					lines = append(lines, m[1])
				}
			}
			break
		}
	}
	want := []int{200, 200, 200, 429, 200, 401, 200, 200, 200, 200, 200, 200}
	if len(lines) != len(want) {
		t.Fatalf("demo printed %d curl lines, want %d:\n%s", len(lines), len(want), gw.stdout.String())
	}
	for i, line := range lines {
		resp, body := runCurl(t, line)
		if resp.StatusCode != want[i] {
			t.Errorf("curl -i %s: status %d, want %d\n%s", line, resp.StatusCode, want[i], body)
		}
		if strings.Contains(line, "/crm/v8/Leads -d") && resp.Header.Get("X-Credits-Charged") != "3" {
			t.Errorf("insert of 21 records charged %q, want 3", resp.Header.Get("X-Credits-Charged"))
		}
		if strings.Contains(line, "/creditgate/v1/usage") && (!strings.Contains(body, `"org":"acme"`) || resp.Header.Get("X-Credits-Charged") != "0") {
			t.Errorf("usage answered %s", body)
		}
		if strings.Contains(line, "/admin/v1/explain") && !strings.Contains(body, `"cost":1,"rule":"add_tags_body"`) {
			t.Errorf("explain answered %s", body)
		}
		if strings.Contains(line, "/addon") && !strings.Contains(body, `"overall_credits":25000`) {
			t.Errorf("add-on answered %s", body)
		}
		if strings.Contains(line, "/quote") && !strings.Contains(body, `"daily_amount_micros":8000000`) {
			t.Errorf("quote answered %s", body)
		}
		if want[i] == 429 {
			const exact = `{"code":"TOO_MANY_REQUESTS","details":{},"message":"Many requests fired than the allowed limit for the past 24 hours.","status":"error"}`
			if body != exact || resp.Header.Get("Retry-After") == "" {
				t.Errorf("429 body %q, Retry-After %q", body, resp.Header.Get("Retry-After"))
			}
		}
	}
}

// runCurl performs one printed curl line (curl -i [-X M] [-H 'k: v']... URL) with net/http,
// so the test needs no curl binary.
func runCurl(t *testing.T, args string) (*http.Response, string) {
	t.Helper()
	method, headers := "GET", http.Header{}
	var target, body string
	toks := shellSplit(args)
	for i := 0; i < len(toks); i++ {
		switch toks[i] {
		case "-X":
			i++
			method = toks[i]
		case "-H":
			i++
			k, v, _ := strings.Cut(toks[i], ":")
			headers.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		case "-d":
			i++
			body = toks[i]
			if method == "GET" {
				method = "POST" // as curl does
			}
			if headers.Get("Content-Type") == "" {
				headers.Set("Content-Type", "application/x-www-form-urlencoded") // as curl does
			}
		default:
			target = toks[i]
		}
	}
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatalf("curl line %q: %v", args, err)
	}
	req.Header = headers
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("curl line %q: %v", args, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// shellSplit splits on spaces outside single quotes, as a shell would for these lines.
func shellSplit(s string) []string {
	var out []string
	var cur strings.Builder
	var quote rune // the quote open, or 0
	have := false
	for _, r := range s {
		switch {
		case quote == 0 && (r == '\'' || r == '"'):
			quote, have = r, true
		case r == quote:
			quote = 0
		case r == ' ' && quote == 0:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// TestReloadOnSIGHUP: traffic keeps flowing through a SIGHUP with a changed cost table, the new
// costs apply to later calls, and an invalid table is refused while the running one stays.
func TestReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	tablePath := filepath.Join(dir, "costs.yaml")
	writeTable := func(cost int, extra string) {
		t.Helper()
		data := fmt.Sprintf("name: reload\nrules:\n  - {name: things, method: GET, path: /things, cost: %d}\n%s", cost, extra)
		// Write and rename, as a config management tool would, so a reader never sees half a file.
		tmp := tablePath + ".tmp"
		if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, tablePath); err != nil {
			t.Fatal(err)
		}
	}
	writeTable(2, "")
	up := newCostUpstream(t, 0)
	gw := startGateway(t, map[string]string{
		"CREDITGATE_UPSTREAM_URL":    up.URL,
		"CREDITGATE_ORGS":            "acme:limit=1000000,keys=acme-key",
		"CREDITGATE_COST_TABLE_FILE": tablePath,
		"CREDITGATE_LOG_LEVEL":       "info",
	})
	charged := func() string {
		resp, body := call(t, http.DefaultClient, "GET", gw.base+"/things", "acme-key")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
		return resp.Header.Get("X-Credits-Charged")
	}
	if got := charged(); got != "2" {
		t.Fatalf("charged %s before reload, want 2", got)
	}

	// Keep traffic flowing from several clients while the table changes (bounded: 10s at most).
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		sent     atomic.Int64
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", gw.base+"/things", nil)
				req.Header.Set("X-Api-Key", "acme-key")
				resp, err := client.Do(req)
				sent.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
			}
		}()
	}

	time.Sleep(200 * time.Millisecond)
	writeTable(7, "")
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return charged() == "7" })

	// An invalid table is refused; the running one stays.
	writeTable(9, "  - name: broken\n    method: GET\n    path: /broken/{x\n    cost: 1\n")
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(gw.stderr.String(), "cost table refused") })
	if got := charged(); got != "7" {
		t.Errorf("charged %s after an invalid table, want the running table's 7", got)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d calls failed during the reloads", failures.Load(), sent.Load())
	}
	t.Logf("%d calls during two reloads, none failed", sent.Load())
	if !strings.Contains(gw.stderr.String(), `line 4: rules[1] \"broken\"`) {
		t.Errorf("the refusal does not name the line:\n%s", gw.stderr.String())
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
	}
}

// TestConcurrencyAcrossGateways: two gateway processes on one redis-server hold one org to its
// cap of calls in flight; when a gateway is killed mid-call, its slots come back after the
// lease TTL.
func TestConcurrencyAcrossGateways(t *testing.T) {
	srv := redistest.Start(t)
	var (
		calls       inFlight
		mode        atomic.Int32 // 0: answer after 300ms; 1: hold until the client leaves; 2: answer at once
		holdRelease = make(chan struct{})
	)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer calls.enter()()
		switch mode.Load() {
		case 0:
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
			}
		case 1:
			select {
			case <-holdRelease:
			case <-r.Context().Done():
			}
		}
	}))
	defer slow.Close()
	defer close(holdRelease)
	vars := map[string]string{
		"CREDITGATE_UPSTREAM_URL": slow.URL,
		"CREDITGATE_REDIS_URL":    srv.URL,
		"CREDITGATE_ORGS":         "acme:limit=100000,concurrency=3,keys=acme-key",
		"CREDITGATE_LEASE_TTL":    "2s",
	}
	a, b := startGateway(t, vars), startGateway(t, vars)

	var (
		wg            sync.WaitGroup
		ok, refused   atomic.Int64
		unexpected    atomic.Int64
		concurrencyOK atomic.Int64
	)
	for i := range 24 { // bounded: 24 clients × 4 calls
		wg.Add(1)
		go func() {
			defer wg.Done()
			gw := []*process{a, b}[i%2]
			for range 4 {
				resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "acme-key")
				switch {
				case resp.StatusCode == 200:
					ok.Add(1)
				case resp.StatusCode == 429 && strings.Contains(body, `"concurrency_limit":3`):
					refused.Add(1)
					if resp.Header.Get("X-Credits-Charged") == "0" {
						concurrencyOK.Add(1)
					}
				default:
					unexpected.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	_, p := calls.read()
	t.Logf("%d calls admitted, %d refused for concurrency; peak in flight at the upstream: %d (cap 3)", ok.Load(), refused.Load(), p)
	if p > 3 || unexpected.Load() != 0 || ok.Load() == 0 || refused.Load() == 0 || concurrencyOK.Load() != refused.Load() {
		t.Fatalf("peak %d, admitted %d, refused %d (uncharged %d), unexpected %d", p, ok.Load(), refused.Load(), concurrencyOK.Load(), unexpected.Load())
	}
	held, _ := srv.Client.HGet(context.Background(), limiter.NewRedisKeys("acme").Pos, "used").Int64()
	if held != ok.Load() {
		t.Errorf("Redis holds %d credits for %d admitted calls", held, ok.Load())
	}

	// Three calls held at the upstream through gateway a, which is then killed.
	mode.Store(1)
	client := &http.Client{Timeout: 10 * time.Second}
	for range 3 {
		go func() {
			req, _ := http.NewRequest("GET", a.base+"/crm/v2/users", nil)
			req.Header.Set("X-Api-Key", "acme-key")
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, 5*time.Second, func() bool {
		n, _ := srv.Client.ZCard(context.Background(), limiter.NewRedisKeys("acme").InFlight).Result()
		return n == 3
	})
	redisNow := func() int64 {
		tm, err := srv.Client.Time(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	_ = a.cmd.Process.Kill()
	select { // startGateway's goroutine waits for the process; its cleanup reads done again
	case err := <-a.done:
		a.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("the killed gateway did not exit")
	}
	killed, killedMs := time.Now(), redisNow()
	// The dead gateway's leases expire at most one lease TTL after the kill, whatever their
	// calls' age: renewals stop with the gateway.
	leases, err := srv.Client.ZRangeWithScores(context.Background(), limiter.NewRedisKeys("acme").InFlight, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if exp := int64(l.Score); exp > killedMs+2000 {
			t.Errorf("lease %v expires %d ms after the kill, past the 2s TTL", l.Member, exp-killedMs)
		}
	}
	if resp, body := call(t, http.DefaultClient, "GET", b.base+"/crm/v2/users", "acme-key"); resp.StatusCode != 429 {
		t.Fatalf("right after the kill: %d %s, want 429 (the dead gateway's leases still count)", resp.StatusCode, body)
	}
	mode.Store(2)
	waitFor(t, 6*time.Second, func() bool {
		resp, _ := call(t, http.DefaultClient, "GET", b.base+"/crm/v2/users", "acme-key")
		return resp.StatusCode == 200
	})
	t.Logf("slots of the killed gateway came back %s after the kill (lease TTL 2s)", time.Since(killed).Round(10*time.Millisecond))
}

// TestLongCallKeepsItsSlot: a call lasting four lease TTLs keeps its concurrency slot (its
// gateway renews the lease), so the org's cap holds at the upstream throughout, across two
// gateways; once the calls end, the slots are free at once.
func TestLongCallKeepsItsSlot(t *testing.T) {
	srv := redistest.Start(t)
	var (
		calls    inFlight
		hold     atomic.Bool
		released = make(chan struct{})
	)
	hold.Store(true)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer calls.enter()()
		if hold.Load() {
			select {
			case <-released:
			case <-r.Context().Done():
			}
		}
	}))
	defer up.Close()
	vars := map[string]string{
		"CREDITGATE_UPSTREAM_URL": up.URL,
		"CREDITGATE_REDIS_URL":    srv.URL,
		"CREDITGATE_ORGS":         "acme:limit=100000,concurrency=2,keys=acme-key",
		"CREDITGATE_LEASE_TTL":    "2s",
	}
	a, b := startGateway(t, vars), startGateway(t, vars)
	client := &http.Client{Timeout: 30 * time.Second}
	var long sync.WaitGroup
	for _, gw := range []*process{a, b} {
		long.Go(func() {
			resp, body := call(t, client, "GET", gw.base+"/crm/v2/users", "acme-key")
			if resp.StatusCode != 200 {
				t.Errorf("long call: %d %s", resp.StatusCode, body)
			}
		})
	}
	waitFor(t, 5*time.Second, func() bool {
		n, _ := calls.read()
		return n == 2
	})
	// 8 s = 4 lease TTLs: every other call is refused for concurrency all along.
	start := time.Now()
	refused := 0
	for i := 0; time.Since(start) < 8*time.Second && i < 400; i++ {
		gw := []*process{a, b}[i%2]
		resp, body := call(t, http.DefaultClient, "GET", gw.base+"/crm/v2/users", "acme-key")
		if resp.StatusCode != 429 || !strings.Contains(body, `"concurrency_limit":2`) {
			t.Fatalf("%s into the long calls: %d %s, want 429 for concurrency", time.Since(start).Round(time.Millisecond), resp.StatusCode, body)
		}
		refused++
		time.Sleep(50 * time.Millisecond)
	}
	close(released)
	long.Wait()
	hold.Store(false)
	_, p := calls.read()
	t.Logf("two calls held their slots for %s (lease TTL 2s), %d calls refused meanwhile; peak in flight at the upstream %d (cap 2)",
		time.Since(start).Round(100*time.Millisecond), refused, p)
	if p > 2 {
		t.Fatalf("peak in flight %d over the cap 2", p)
	}
	if resp, body := call(t, http.DefaultClient, "GET", a.base+"/crm/v2/users", "acme-key"); resp.StatusCode != 200 {
		t.Fatalf("after the long calls: %d %s", resp.StatusCode, body)
	}
}

// inFlight counts the calls an upstream is serving, and the most at once.
type inFlight struct {
	mu        sync.Mutex
	now, peak int
}

// enter counts a call in; the func it returns counts it out.
func (f *inFlight) enter() func() {
	f.mu.Lock()
	f.now++
	f.peak = max(f.peak, f.now)
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.now--
		f.mu.Unlock()
	}
}

func (f *inFlight) read() (now, peak int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now, f.peak
}
