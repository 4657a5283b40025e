// Command bench measures what creditgate adds to every call, on one machine over loopback.
//
// It starts a fast upstream, a bare httputil.ReverseProxy with default settings (and one with
// the gateway's transport and buffer pool, for reference), and the creditgate binary with the
// in-memory store and with a redis-server it starts itself; drives each with the same load in
// interleaved rounds (wrk when installed, else a Go load generator); and prints requests/s,
// p50/p99 and CPU per request, as ratios of the bare proxy. Then: latency at half the bare
// proxy's saturation rate, limiter decisions/s against one Redis as a ratio of redis-benchmark
// running the same script, Redis memory per org at a saturated 24h window, and allocations
// per request on the hot path.
//
//	go run ./bench [-rounds 3] [-duration 5s] [-conns 32]
//
// Every process listens on 127.0.0.1 only; every load run is bounded in time.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditgate/creditgate/limiter"
)

const (
	benchPath = "/crm/v2/users" // 1 credit in the built-in table
	benchKey  = "bench-key"
	capKey    = "bench-cap-key"
	// Limits no run can reach: every call is admitted and debited.
	benchOrgs = "bench:limit=1000000000000000,keys=" + benchKey +
		";benchcap:limit=1000000000000000,concurrency=100000,keys=" + capKey
)

func main() {
	if runRole() {
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// target is one server under load.
type target struct {
	name  string
	p     *proc
	key   string
	redis bool // counts the redis-server's CPU and EVALSHAs too

	runs      []load
	ticks     int64 // CPU of p over all runs
	redisTick int64
	evalsha   int64
	fixed     []load
}

func (t *target) url() string { return "http://" + t.p.addr + benchPath }

func (t *target) total() (n int64, elapsed time.Duration) {
	for _, r := range t.runs {
		n += r.requests
		elapsed += r.elapsed
	}
	return n, elapsed
}

func (t *target) rps() float64 {
	n, el := t.total()
	if el == 0 {
		return 0
	}
	return float64(n) / el.Seconds()
}

func run() error {
	rounds := flag.Int("rounds", 3, "interleaved rounds of saturation runs")
	duration := flag.Duration("duration", 5*time.Second, "length of one run")
	conns := flag.Int("conns", 32, "connections of the load generator")
	threads := flag.Int("threads", 2, "wrk threads")
	gen := flag.String("load", "auto", "load generator: wrk, go, or auto (wrk when installed)")
	limiterOnly := flag.Bool("limiter-only", false, "only the Redis parts: decisions/s and memory per org")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process's RedisStore.Spend runs (the Go client side) to this file")
	profiles := flag.String("profiles", "", "directory: also profile an in-process gateway (memory and Redis store) under load into gateway-*.prof there")
	flag.Parse()
	if *rounds < 1 || *duration < time.Second || *conns < 1 {
		return fmt.Errorf("-rounds must be at least 1, -duration at least 1s, -conns at least 1")
	}
	useWrk := *gen == "wrk"
	if *gen == "auto" {
		_, err := exec.LookPath("wrk")
		useWrk = err == nil
	}
	saturate := func(t *target) (load, error) {
		if useWrk {
			return wrkRun(t.url(), t.key, *threads, *conns, *duration)
		}
		return closedLoop(t.url(), t.key, *conns, *duration), nil
	}
	started := time.Now()
	ctx := context.Background()

	tmp, err := os.MkdirTemp("", "creditgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	start := func(p *proc, err error) (*proc, error) {
		if p != nil {
			procs = append(procs, p)
		}
		return p, err
	}
	rds, err := start(startRedis(tmp))
	if err != nil {
		return err
	}
	rc := redis.NewClient(&redis.Options{Addr: rds.addr})
	defer rc.Close()

	var httpReport strings.Builder
	if !*limiterOnly {
		if err := httpBench(&httpReport, httpOpts{rounds: *rounds, duration: *duration, conns: *conns,
			threads: *threads, useWrk: useWrk, saturate: saturate, profiles: *profiles}, tmp, rds, rc, start); err != nil {
			return err
		}
	}

	// Limiter decisions against one Redis: the store as the gateway calls it, and
	// redis-benchmark running the same script.
	fmt.Fprintln(os.Stderr, "limiter decisions/s against one Redis…")
	// As many connections as redis-benchmark gets (the gateway's default pool is 10 per CPU).
	client, err := limiter.NewRedisClient("redis://" + rds.addr + "?pool_size=" + strconv.Itoa(*conns))
	if err != nil {
		return err
	}
	defer client.Close()
	store, err := limiter.NewRedisStore(client, limiter.Options{})
	if err != nil {
		return err
	}
	if err := store.LoadScripts(ctx); err != nil {
		return err
	}
	est, err := redisBenchmark(store, rds.addr, "bench-rb", *conns, 20_000)
	if err != nil {
		return err
	}
	// Runs of about a second, interleaved, so both sides see the same machine; the ratio is
	// taken per pair. Redis CPU per decision is the script's own cost, whatever the noise.
	n := max(int(est), 10_000)
	piped, err := limiter.NewPipelinedStore(ctx, store, 128, 2)
	if err != nil {
		return err
	}
	var rbRate, storeRate, oneRate, pipedRate, ratios, oneRatios, pipedRatios []float64
	var rbTicks, storeTicks, oneTicks, pipedTicks int64
	calls0, usec0, err := evalshaCalls(ctx, rc)
	if err != nil {
		return err
	}
	for range *rounds * 2 {
		t0, _ := cpuTicks(rds.pid())
		v, err := redisBenchmark(store, rds.addr, "bench-rb", *conns, n)
		if err != nil {
			return err
		}
		t1, _ := cpuTicks(rds.pid())
		stopProfile, err := startProfile(*cpuProfile)
		if err != nil {
			return err
		}
		w, err := storeDecisions(store, "bench-store", *conns, n)
		stopProfile()
		if err != nil {
			return err
		}
		t2, _ := cpuTicks(rds.pid())
		x, err := storeDecisions(piped, "bench-piped", *conns, n)
		if err != nil {
			return err
		}
		t3, _ := cpuTicks(rds.pid())
		// The same store with the Go client on one P, as redis-benchmark's client is one
		// thread: on a machine whose cores Redis shares, a second P's spinning and wake-ups
		// take CPU from redis-server.
		procs := runtime.GOMAXPROCS(1)
		y, err := storeDecisions(store, "bench-store-1p", *conns, n)
		runtime.GOMAXPROCS(procs)
		if err != nil {
			return err
		}
		t4, _ := cpuTicks(rds.pid())
		rbRate, storeRate, ratios = append(rbRate, v), append(storeRate, w), append(ratios, w/v)
		pipedRate, pipedRatios = append(pipedRate, x), append(pipedRatios, x/v)
		oneRate, oneRatios = append(oneRate, y), append(oneRatios, y/v)
		rbTicks, storeTicks, pipedTicks = rbTicks+t1-t0, storeTicks+t2-t1, pipedTicks+t3-t2
		oneTicks += t4 - t3
	}
	calls1, usec1, err := evalshaCalls(ctx, rc)
	if err != nil {
		return err
	}
	scriptTime := time.Duration(usec1-usec0) * time.Microsecond / time.Duration(max(calls1-calls0, 1))
	calls := time.Duration(n * len(ratios))
	rbCPU, storeCPU := time.Duration(rbTicks)*tick/calls, time.Duration(storeTicks)*tick/calls
	pipedCPU, oneCPU := time.Duration(pipedTicks)*tick/calls, time.Duration(oneTicks)*tick/calls

	fmt.Fprintln(os.Stderr, "Redis memory per org, allocations per request…")
	mem, buckets, err := memoryPerOrg(ctx, rc, store)
	if err != nil {
		return err
	}
	al, err := hotPathAllocs()
	if err != nil {
		return err
	}

	// The report.
	out := os.Stdout
	fmt.Fprintf(out, "\ncreditgate bench: %s, %d CPUs, GOMAXPROCS %d, %s/%s\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	fmt.Fprint(out, httpReport.String())
	fmt.Fprintf(out, "limiter decisions/s on one Redis (%d clients, spend.lua, no pipelining, %d interleaved pairs of %s):\n",
		*conns, len(ratios), fmtInt(float64(n)))
	fmt.Fprintf(out, "  redis-benchmark EVALSHA  %s/s  (Redis CPU %s/decision)\n", fmtInt(mean(rbRate)), fmtDur(rbCPU))
	fmt.Fprintf(out, "  RedisStore.Spend (Go)    %s/s  (Redis CPU %s/decision)\n", fmtInt(mean(storeRate)), fmtDur(storeCPU))
	fmt.Fprintf(out, "  RedisStore.Spend, 1 P    %s/s  (Redis CPU %s/decision)  = %.2f× redis-benchmark (median; pairs: %s)\n",
		fmtInt(mean(oneRate)), fmtDur(oneCPU), median(oneRatios), fmtRatios(oneRatios))
	fmt.Fprintf(out, "  PipelinedStore.Spend     %s/s  (Redis CPU %s/decision)  = %.2f× redis-benchmark (median; pairs: %s)\n",
		fmtInt(mean(pipedRate)), fmtDur(pipedCPU), median(pipedRatios), fmtRatios(pipedRatios))
	fmt.Fprintf(out, "  spend.lua itself         %s/call in Redis (INFO commandstats, network excluded)\n", fmtDur(scriptTime))
	fmt.Fprintf(out, "  RedisStore / redis-benchmark, median of pairs: %.2f×  (pairs: %s)\n", median(ratios), fmtRatios(ratios))
	fmt.Fprintf(out, "  (1 P: the Go client limited to one P, GOMAXPROCS 1, as redis-benchmark is one thread)\n\n")
	fmt.Fprintf(out, "Redis memory per org, saturated 24h window (1-minute buckets, %d live): %s bytes (MEMORY USAGE of its keys)\n\n",
		buckets, fmtInt(float64(mem)))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "hot path, canned upstream\tallocs/request\tbytes/request\tns/request\t")
	for _, a := range al {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t\n", a.name, a.allocs, fmtInt(float64(a.bytes)), fmtInt(float64(a.nsPerOp)))
	}
	tw.Flush()
	fmt.Fprintf(out, "\nbench took %s\n", time.Since(started).Round(time.Second))
	return nil
}

// startProfile starts (or resumes, appending a numbered file) a CPU profile; "" does nothing.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	profileSeq++
	if profileSeq > 1 {
		path = fmt.Sprintf("%s.%d", path, profileSeq)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

var profileSeq int

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func fmtRatios(v []float64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(parts, " ")
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(max(len(v), 1))
}

func fmtSigned(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDur(-d)
	}
	return "+" + fmtDur(d)
}

type httpOpts struct {
	rounds, conns, threads int
	duration               time.Duration
	useWrk                 bool
	saturate               func(*target) (load, error)
	profiles               string // directory for hot-path profiles; "" for none
}

// httpBench runs the proxies: saturation rounds and latency at half the bare proxy's rate.
func httpBench(out io.Writer, o httpOpts, tmp string, rds *proc, rc *redis.Client,
	start func(*proc, error) (*proc, error)) error {
	ctx := context.Background()
	fmt.Fprintln(os.Stderr, "building the gateway and starting the servers…")
	bin, err := buildGateway(tmp)
	if err != nil {
		return err
	}
	upstream, err := start(startRole("upstream"))
	if err != nil {
		return err
	}
	upEnv := "CREDITGATE_BENCH_UPSTREAM=http://" + upstream.addr
	bare, err := start(startRole("bare", upEnv))
	if err != nil {
		return err
	}
	tuned, err := start(startRole("bare-tuned", upEnv))
	if err != nil {
		return err
	}
	gwMem, err := start(startGateway(bin, "gateway-memory", upstream.addr, "", benchOrgs, benchKey))
	if err != nil {
		return err
	}
	gwRedis, err := start(startGateway(bin, "gateway-redis", upstream.addr, "redis://"+rds.addr, benchOrgs, benchKey))
	if err != nil {
		return err
	}
	gwPiped, err := start(startGateway(bin, "gateway-redis-pipelined", upstream.addr, "redis://"+rds.addr, benchOrgs, benchKey,
		"CREDITGATE_REDIS_PIPELINE=true"))
	if err != nil {
		return err
	}

	// The memory-store gateway again, finding the org from an access token (a warm cache of
	// verified tokens, as a client reusing its token sees it) instead of an API key.
	jwtEnv, jwtHeader, err := jwtSetup(tmp)
	if err != nil {
		return err
	}
	gwJWT, err := start(startGateway(bin, "gateway-memory-jwt", upstream.addr, "", benchOrgs, jwtHeader, jwtEnv...))
	if err != nil {
		return err
	}

	direct := &target{name: "upstream, direct", p: upstream, key: benchKey}
	targets := []*target{
		{name: "bare ReverseProxy, default", p: bare, key: benchKey},
		{name: "bare ReverseProxy, tuned transport+pool", p: tuned, key: benchKey},
		{name: "gateway, memory store", p: gwMem, key: benchKey},
		{name: "gateway, Redis store", p: gwRedis, key: benchKey, redis: true},
		{name: "gateway, Redis, concurrency cap", p: gwRedis, key: capKey, redis: true},
		{name: "gateway, Redis, pipelined", p: gwPiped, key: benchKey, redis: true},
		{name: "gateway, memory store, JWT", p: gwJWT, key: jwtHeader},
	}
	jwtRow := targets[len(targets)-1]
	baseline := targets[0]

	// Warm up: connections, pools, the JIT-free but cache-hungry rest.
	for _, t := range append([]*target{direct}, targets...) {
		if o.useWrk {
			_, _ = wrkRun(t.url(), t.key, o.threads, o.conns, time.Second)
		} else {
			closedLoop(t.url(), t.key, o.conns, time.Second)
		}
	}

	measure := func(t *target) error {
		before, _ := cpuTicks(t.p.pid())
		rBefore, _ := cpuTicks(rds.pid())
		eBefore, _, _ := evalshaCalls(ctx, rc)
		l, err := o.saturate(t)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		after, _ := cpuTicks(t.p.pid())
		rAfter, _ := cpuTicks(rds.pid())
		eAfter, _, _ := evalshaCalls(ctx, rc)
		t.runs = append(t.runs, l)
		t.ticks += after - before
		if t.redis {
			t.redisTick += rAfter - rBefore
			t.evalsha += eAfter - eBefore
		}
		if l.failures > 0 {
			fmt.Fprintf(os.Stderr, "  %s: %d failed requests\n", t.name, l.failures)
		}
		return nil
	}
	fmt.Fprintf(os.Stderr, "saturation: %d rounds of %s per target, %d connections, load by %s\n",
		o.rounds, o.duration, o.conns, map[bool]string{true: "wrk", false: "the Go generator"}[o.useWrk])
	all := append([]*target{direct}, targets...)
	for r := range o.rounds {
		for i := range all {
			t := all[(i+r)%len(all)] // rotate, so no target always runs first or last
			if err := measure(t); err != nil {
				return err
			}
		}
		fmt.Fprintf(os.Stderr, "  round %d: bare %s rps, gateway memory %s, Redis %s\n", r+1,
			fmtInt(baseline.runs[r].rps()), fmtInt(targets[2].runs[r].rps()), fmtInt(targets[3].runs[r].rps()))
	}

	// Latency at half the bare proxy's saturation rate, with the time the servers spent
	// ready to run but waiting for a CPU (what a shared machine adds to the tail).
	rate := baseline.rps() / 2
	fixed := []*target{targets[0], targets[1], targets[2], targets[3], targets[5]}
	fixedDur := max(o.duration*3/5, time.Second)
	fmt.Fprintf(os.Stderr, "latency at %s rps (half the bare proxy's saturation)…\n", fmtInt(rate))
	waits := map[*target]time.Duration{}
	for r := range 3 {
		for i := range fixed {
			t := fixed[(i+r)%len(fixed)]
			w0 := schedWait(t.p.pid())
			if t.redis {
				w0 += schedWait(rds.pid())
			}
			l := openLoop(t.url(), t.key, rate, fixedDur)
			w1 := schedWait(t.p.pid())
			if t.redis {
				w1 += schedWait(rds.pid())
			}
			t.fixed = append(t.fixed, l)
			waits[t] += (w1 - w0) / time.Duration(max(l.requests, 1))
		}
	}

	if o.profiles != "" {
		if err := profileHotPath(o, upstream.addr, rds.addr); err != nil {
			return err
		}
	}

	fmt.Fprintf(out, "load by %s (%d connections), %d rounds of %s per target\n\n",
		map[bool]string{true: "wrk", false: "Go generator"}[o.useWrk], o.conns, o.rounds, o.duration)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "saturation\trequests/s\t× bare\tp50\tp99\tCPU/request\tRedis CPU/request\tEVALSHA/request\t")
	for _, t := range all {
		n, _ := t.total()
		var p50s, p99s, ratios []float64
		for r, run := range t.runs {
			p50s, p99s = append(p50s, float64(run.p50)), append(p99s, float64(run.p99))
			ratios = append(ratios, run.rps()/baseline.runs[r].rps())
		}
		ratio := "-"
		if t != direct {
			ratio = fmt.Sprintf("%.2f", median(ratios))
		}
		cpu := fmtDur(time.Duration(t.ticks) * tick / time.Duration(max(n, 1)))
		rcpu, calls := "-", "-"
		if t.redis {
			rcpu = fmtDur(time.Duration(t.redisTick) * tick / time.Duration(max(n, 1)))
			calls = fmt.Sprintf("%.2f", float64(t.evalsha)/float64(max(n, 1)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", t.name, fmtInt(t.rps()), ratio,
			fmtDur(time.Duration(median(p50s))), fmtDur(time.Duration(median(p99s))), cpu, rcpu, calls)
	}
	tw.Flush()
	fmt.Fprintln(out, "  (requests/s over all rounds; × bare, p50 and p99: medians of the rounds; CPU of the server's own process)")
	var ratios []string
	for r := range o.rounds {
		b := baseline.runs[r].rps()
		ratios = append(ratios, fmt.Sprintf("memory %.2f / Redis %.2f", targets[2].runs[r].rps()/b, targets[3].runs[r].rps()/b))
	}
	fmt.Fprintf(out, "  per round, × bare: %s\n", strings.Join(ratios, "; "))
	var jwtRatios []float64
	for r := range o.rounds {
		jwtRatios = append(jwtRatios, jwtRow.runs[r].rps()/targets[2].runs[r].rps())
	}
	fmt.Fprintf(out, "  JWT (warm cache) / API key, memory store: %.2f× (median of rounds: %s)\n\n", median(jwtRatios), fmtRatios(jwtRatios))

	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "at %s requests/s\tp50\tp99\tp99 added\tadded vs tuned\tCPU wait/request\t\n", fmtInt(rate))
	var baseP99, tunedP99 time.Duration
	for _, t := range fixed {
		var p50s, p99s []float64
		var failures int64
		for _, f := range t.fixed {
			p50s, p99s = append(p50s, float64(f.p50)), append(p99s, float64(f.p99))
			failures += f.failures
		}
		p50, p99 := time.Duration(median(p50s)), time.Duration(median(p99s))
		added, vsTuned := "-", "-"
		switch t {
		case baseline:
			baseP99 = p99
		case targets[1]:
			tunedP99 = p99
			added = fmtSigned(p99 - baseP99)
		default:
			added, vsTuned = fmtSigned(p99-baseP99), fmtSigned(p99-tunedP99)
		}
		if failures > 0 {
			added += fmt.Sprintf(" (%d failed)", failures)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", t.name, fmtDur(p50), fmtDur(p99), added, vsTuned,
			fmtDur(waits[t]/time.Duration(len(t.fixed))))
	}
	tw.Flush()
	fmt.Fprintf(out, "  (open loop, 3 interleaved runs of %s: latency from each request's scheduled start, medians of the runs;\n", fixedDur)
	fmt.Fprintln(out, "   CPU wait: time the server (and Redis) were ready to run but had no CPU, from /proc/<pid>/task/*/schedstat)")
	fmt.Fprintln(out)

	return nil
}

// profileHotPath writes CPU profiles of an in-process gateway under the same load: with the
// memory store, and with the Redis store on the bench's redis-server.
func profileHotPath(o httpOpts, upstream, redisAddr string) error {
	if err := os.MkdirAll(o.profiles, 0o755); err != nil {
		return err
	}
	drive := func(url string) error {
		if o.useWrk {
			_, err := wrkRun(url, benchKey, o.threads, o.conns, o.duration)
			return err
		}
		closedLoop(url, benchKey, o.conns, o.duration) // in this process: its own frames show
		return nil
	}
	mem, err := limiter.NewMemoryStore(limiter.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "profiling the hot path…")
	if err := profileGateway(filepath.Join(o.profiles, "gateway-memory.prof"), upstream, mem, true, time.Second, drive); err != nil {
		return err
	}
	client, err := limiter.NewRedisClient("redis://" + redisAddr)
	if err != nil {
		return err
	}
	defer client.Close()
	rs, err := limiter.NewRedisStore(client, limiter.Options{})
	if err != nil {
		return err
	}
	if err := rs.LoadScripts(context.Background()); err != nil {
		return err
	}
	return profileGateway(filepath.Join(o.profiles, "gateway-redis.prof"), upstream, rs, false, time.Second, drive)
}
