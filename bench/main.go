// Command bench measures what creditgate adds to every call, on one machine over loopback.
//
// It starts a fast upstream; two httputil.ReverseProxy baselines, the stock one with an idle
// pool that holds the load's connections and a tuned one with the gateway's transport and
// buffer pool (the baseline of the ratios); the creditgate binary with the in-memory store,
// with a redis-server it starts itself (plain, with a concurrency cap, pipelined) and in jwt
// org mode; and, when their binaries are found, Traefik's rateLimit middleware (Redis and
// in-process) and Caddy with caddy-ratelimit, each with a limit no run reaches. It drives
// them all with the same load in interleaved rounds (wrk when installed, else a Go load
// generator) and prints requests/s, p50/p99 and CPU per request, as ratios of both baselines.
// Then: the Redis store plain and pipelined at 64 connections, latency at half the tuned
// proxy's saturation rate, the Redis memory of a light org and of a saturated one, the start
// with a million orgs from a file, limiter decisions/s against one Redis as a ratio of
// redis-benchmark running the same script, allocations per request on the hot path, and each
// of the project's performance targets, met or not.
//
//	go run ./bench [-rounds 3] [-duration 4s] [-conns 32] [-traefik PATH] [-caddy PATH]
//
// Every process listens on 127.0.0.1 only; every load run is bounded in time.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
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
	// A light org: it makes lightCalls calls, and the bench reads what its keys hold.
	lightOrg   = "benchlight"
	lightKey   = "bench-light-key"
	lightCalls = 10
	// Limits no run can reach: every call is admitted and debited.
	benchOrgs = "bench:limit=1000000000000000,keys=" + benchKey +
		";benchcap:limit=1000000000000000,concurrency=100000,keys=" + capKey +
		";" + lightOrg + ":limit=1000000000000000,keys=" + lightKey
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
	evalsha   int64 // EVALSHA and EVAL calls Redis ran during the runs
	evalUsec  int64 // and the microseconds it spent in them
	fixed     []load
}

func (t *target) url() string { return "http://" + t.p.addr + benchPath }

// idleConnsEnv sets the idle pool per host of the stock proxy's transport.
const idleConnsEnv = "CREDITGATE_BENCH_IDLE_CONNS"

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
	duration := flag.Duration("duration", 4*time.Second, "length of one run")
	conns := flag.Int("conns", 32, "connections of the load generator")
	threads := flag.Int("threads", 2, "wrk threads")
	gen := flag.String("load", "auto", "load generator: wrk, go, or auto (wrk when installed)")
	limiterOnly := flag.Bool("limiter-only", false, "only the Redis parts: decisions/s and memory per org")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process's RedisStore.Spend runs (the Go client side) to this file")
	profiles := flag.String("profiles", "", "directory: also profile an in-process gateway (memory and Redis store) under load into gateway-*.prof there")
	traefikBin := flag.String("traefik", "", "Traefik binary (default: $CREDITGATE_BENCH_TRAEFIK, else traefik on PATH; absent if none)")
	caddyBin := flag.String("caddy", "", "Caddy binary with caddy-ratelimit (default: $CREDITGATE_BENCH_CADDY, else caddy on PATH; absent if none)")
	manyOrgsN := flag.Int("orgs", 1_000_000, "orgs in the file the gateway starts with, for the start-up measurement; 0 skips it")
	flag.Parse()
	if *rounds < 1 || *duration < time.Second || *conns < 1 || *manyOrgsN < 0 {
		return fmt.Errorf("-rounds must be at least 1, -duration at least 1s, -conns at least 1, -orgs at least 0")
	}
	useWrk := *gen == "wrk"
	if *gen == "auto" {
		_, err := exec.LookPath("wrk")
		useWrk = err == nil
	}
	saturate := func(t *target, conns int) (load, error) {
		if useWrk {
			return wrkRun(t.url(), t.key, *threads, conns, *duration)
		}
		return closedLoop(t.url(), t.key, conns, *duration), nil
	}
	var peers peerPaths
	var err error
	if peers.traefik, err = findPeer(*traefikBin, "CREDITGATE_BENCH_TRAEFIK", "traefik"); err != nil {
		return fmt.Errorf("-traefik: %w", err)
	}
	if peers.caddy, err = findPeer(*caddyBin, "CREDITGATE_BENCH_CADDY", "caddy"); err != nil {
		return fmt.Errorf("-caddy: %w", err)
	}
	if peers.caddy != "" && !caddyHasRateLimit(peers.caddy) {
		fmt.Fprintf(os.Stderr, "%s has no rate_limit handler (github.com/mholt/caddy-ratelimit): its row is absent\n", peers.caddy)
		peers.caddy = ""
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
		for _, p := range slices.Backward(procs) { // Redis last: the gateways would log its absence
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
	var hr *httpResults
	if !*limiterOnly {
		hr, err = httpBench(&httpReport, httpOpts{rounds: *rounds, duration: *duration, conns: *conns,
			threads: *threads, useWrk: useWrk, saturate: saturate, profiles: *profiles, peers: peers,
			manyOrgs: *manyOrgsN}, tmp, rds, rc, start)
		if err != nil {
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
	// The scripts' time in Redis (INFO commandstats): under redis-benchmark, whose calls
	// record no debit, and under RedisStore, whose calls do, as the gateway's.
	var rbScript, storeScript scriptTime
	for range *rounds * 2 {
		t0, _ := cpuTicks(rds.pid())
		s0 := scriptStats(ctx, rc)
		v, err := redisBenchmark(store, rds.addr, "bench-rb", *conns, n)
		if err != nil {
			return err
		}
		t1, _ := cpuTicks(rds.pid())
		s1 := scriptStats(ctx, rc)
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
		s2 := scriptStats(ctx, rc)
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
		rbScript.add(s0, s1)
		storeScript.add(s1, s2)
		rbRate, storeRate, ratios = append(rbRate, v), append(storeRate, w), append(ratios, w/v)
		pipedRate, pipedRatios = append(pipedRate, x), append(pipedRatios, x/v)
		oneRate, oneRatios = append(oneRate, y), append(oneRatios, y/v)
		rbTicks, storeTicks, pipedTicks = rbTicks+t1-t0, storeTicks+t2-t1, pipedTicks+t3-t2
		oneTicks += t4 - t3
	}
	calls := time.Duration(n * len(ratios))
	rbCPU, storeCPU := time.Duration(rbTicks)*tick/calls, time.Duration(storeTicks)*tick/calls
	pipedCPU, oneCPU := time.Duration(pipedTicks)*tick/calls, time.Duration(oneTicks)*tick/calls

	fmt.Fprintln(os.Stderr, "Redis memory per org, allocations per request…")
	saturated, buckets, err := memoryPerOrg(ctx, rc, store)
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
	fmt.Fprintf(out, "  spend.lua itself         %s/call with the debit's record (RedisStore), %s without (redis-benchmark)\n",
		fmtDur(storeScript.perCall()), fmtDur(rbScript.perCall()))
	fmt.Fprintf(out, "                           (time in EVALSHA from INFO commandstats, network excluded)\n")
	fmt.Fprintf(out, "  RedisStore / redis-benchmark, median of pairs: %.2f×  (pairs: %s)\n", median(ratios), fmtRatios(ratios))
	fmt.Fprintf(out, "  (1 P: the Go client limited to one P, GOMAXPROCS 1, as redis-benchmark is one thread)\n\n")
	fmt.Fprintf(out, "Redis memory per org, saturated 24h window (1-minute buckets, %d live): %s bytes in %d keys, window %s (MEMORY USAGE)\n\n",
		buckets, fmtInt(float64(saturated.total)), saturated.keys, fmtInt(float64(saturated.window)))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "hot path, canned upstream\tallocs/request\tbytes/request\tns/request\t")
	for _, a := range al {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t\n", a.name, a.allocs, fmtInt(float64(a.bytes)), fmtInt(float64(a.nsPerOp)))
	}
	tw.Flush()
	fmt.Fprintln(out)
	printGoals(out, goals(hr, storeScript.perCall(), saturated))
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
