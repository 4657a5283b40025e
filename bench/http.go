package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creditgate/creditgate/limiter"
)

type httpOpts struct {
	rounds, conns, threads int
	duration               time.Duration
	useWrk                 bool
	saturate               func(t *target, conns int) (load, error)
	profiles               string // directory for hot-path profiles; "" for none
	peers                  peerPaths
	manyOrgs               int // orgs in the start-up measurement; 0 skips it
}

// httpResults is what the HTTP part measured, for the targets.
type httpResults struct {
	stock, tuned, mem, redis, capped, piped, jwt *target
	traefikRedis, traefikMem, caddy              *target // runs empty when absent
	rate                                         float64 // of the latency runs: half the tuned proxy's saturation
	p99                                          map[*target]time.Duration
	conns64                                      int
	redis64, piped64                             *target // the Redis rows again at 64 connections
	light                                        orgMemory
	many                                         manyOrgs
	manyErr                                      error
}

// orgMemory is MEMORY USAGE summed over one org's keys.
type orgMemory struct {
	total, window, records int64 // all its keys; the window's (ring, head, total); the debit records'
	keys                   int   // keys that exist
}

// measured reports whether t ran (a peer that was absent did not).
func (t *target) measured() bool { return len(t.runs) > 0 }

// ratioTo returns the median over rounds of t's requests/s over base's in the same round.
func (t *target) ratioTo(base *target) float64 {
	var ratios []float64
	for r := range min(len(t.runs), len(base.runs)) {
		ratios = append(ratios, t.runs[r].rps()/base.runs[r].rps())
	}
	return median(ratios)
}

// cpuPerCall returns the CPU time of t's process per answered call over its runs.
func (t *target) cpuPerCall() time.Duration {
	n, _ := t.total()
	return time.Duration(t.ticks) * tick / time.Duration(max(n, 1))
}

// scriptPerCall returns the time Redis spent in scripts (INFO commandstats) per answered call.
func (t *target) scriptPerCall() time.Duration {
	n, _ := t.total()
	return time.Duration(t.evalUsec) * time.Microsecond / time.Duration(max(n, 1))
}

// httpBench runs the proxies: saturation rounds, the Redis rows at 64 connections, latency at
// half the tuned proxy's rate, the memory of a light org, and the start with many orgs.
func httpBench(out io.Writer, o httpOpts, tmp string, rds *proc, rc *redis.Client,
	start func(*proc, error) (*proc, error)) (*httpResults, error) {
	ctx := context.Background()
	fmt.Fprintln(os.Stderr, "building the gateway and starting the servers…")
	bin, err := buildGateway(tmp)
	if err != nil {
		return nil, err
	}
	upstream, err := start(startRole("upstream"))
	if err != nil {
		return nil, err
	}
	upEnv := "CREDITGATE_BENCH_UPSTREAM=http://" + upstream.addr
	idle := max(o.conns, 64, openLoopConns) // at least the load's connections, in every part
	stock, err := start(startRole("stock", upEnv, idleConnsEnv+"="+strconv.Itoa(idle)))
	if err != nil {
		return nil, err
	}
	tuned, err := start(startRole("tuned", upEnv))
	if err != nil {
		return nil, err
	}
	gwMem, err := start(startGateway(bin, "gateway-memory", upstream.addr, "", benchOrgs, benchKey))
	if err != nil {
		return nil, err
	}
	gwRedis, err := start(startGateway(bin, "gateway-redis", upstream.addr, "redis://"+rds.addr, benchOrgs, benchKey))
	if err != nil {
		return nil, err
	}
	gwPiped, err := start(startGateway(bin, "gateway-redis-pipelined", upstream.addr, "redis://"+rds.addr, benchOrgs, benchKey,
		"CREDITGATE_REDIS_PIPELINE=true"))
	if err != nil {
		return nil, err
	}
	// The memory-store gateway again, finding the org from an access token (a warm cache of
	// verified tokens, as a client reusing its token sees it) instead of an API key.
	jwtEnv, jwtHeader, err := jwtSetup(tmp)
	if err != nil {
		return nil, err
	}
	gwJWT, err := start(startGateway(bin, "gateway-memory-jwt", upstream.addr, "", benchOrgs, jwtHeader, jwtEnv...))
	if err != nil {
		return nil, err
	}

	res := &httpResults{
		stock:  &target{name: fmt.Sprintf("ReverseProxy, stock (idle pool %d)", idle), p: stock, key: benchKey},
		tuned:  &target{name: "ReverseProxy, tuned (gateway transport+BufferPool)", p: tuned, key: benchKey},
		mem:    &target{name: "gateway, memory store", p: gwMem, key: benchKey},
		redis:  &target{name: "gateway, Redis store", p: gwRedis, key: benchKey, redis: true},
		capped: &target{name: "gateway, Redis, concurrency cap", p: gwRedis, key: capKey, redis: true},
		piped:  &target{name: "gateway, Redis, pipelined", p: gwPiped, key: benchKey, redis: true},
		jwt:    &target{name: "gateway, memory store, JWT", p: gwJWT, key: jwtHeader},
	}
	// The peers, each in its own process, on the same upstream and Redis.
	res.traefikRedis = &target{name: "Traefik rateLimit, Redis", key: benchKey, redis: true}
	res.traefikMem = &target{name: "Traefik rateLimit, in-process", key: benchKey}
	res.caddy = &target{name: "Caddy + caddy-ratelimit", key: benchKey}
	if bin := o.peers.traefik; bin != "" {
		v := peerVersion(bin, "version")
		res.traefikRedis.name = "Traefik " + v + " rateLimit, Redis"
		res.traefikMem.name = "Traefik " + v + " rateLimit, in-process"
		if res.traefikRedis.p, err = start(startTraefik(bin, tmp, "traefik-redis", upstream.addr, rds.addr, traefikNeverReached, idle)); err != nil {
			return nil, err
		}
		if res.traefikMem.p, err = start(startTraefik(bin, tmp, "traefik-memory", upstream.addr, "", traefikNeverReached, idle)); err != nil {
			return nil, err
		}
	}
	if bin := o.peers.caddy; bin != "" {
		res.caddy.name = "Caddy " + peerVersion(bin, "version") + " + caddy-ratelimit"
		if res.caddy.p, err = start(startCaddy(bin, tmp, "caddy", upstream.addr, caddyNeverReached, idle)); err != nil {
			return nil, err
		}
	}

	direct := &target{name: "upstream, direct", p: upstream, key: benchKey}
	all := []*target{direct, res.stock, res.tuned, res.mem, res.redis, res.capped, res.piped, res.jwt,
		res.traefikRedis, res.traefikMem, res.caddy}
	var running []*target
	for _, t := range all {
		if t.p != nil {
			running = append(running, t)
		}
	}

	// Warm up: connections, pools, caches.
	for _, t := range running {
		if o.useWrk {
			_, _ = wrkRun(t.url(), t.key, o.threads, o.conns, time.Second)
		} else {
			closedLoop(t.url(), t.key, o.conns, time.Second)
		}
	}

	measure := func(t *target, conns int) error {
		before, _ := cpuTicks(t.p.pid())
		rBefore, _ := cpuTicks(rds.pid())
		eBefore, uBefore, _ := evalshaCalls(ctx, rc)
		l, err := o.saturate(t, conns)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		after, _ := cpuTicks(t.p.pid())
		rAfter, _ := cpuTicks(rds.pid())
		eAfter, uAfter, _ := evalshaCalls(ctx, rc)
		t.runs = append(t.runs, l)
		t.ticks += after - before
		if t.redis {
			t.redisTick += rAfter - rBefore
			t.evalsha += eAfter - eBefore
			t.evalUsec += uAfter - uBefore
		}
		if l.failures > 0 {
			fmt.Fprintf(os.Stderr, "  %s: %d failed requests\n", t.name, l.failures)
		}
		return nil
	}
	rounds := func(ts []*target, conns int, report func(r int)) error {
		for r := range o.rounds {
			for i := range ts {
				t := ts[(i+r)%len(ts)] // rotate, so no target always runs first or last
				if err := measure(t, conns); err != nil {
					return err
				}
			}
			report(r)
		}
		return nil
	}
	fmt.Fprintf(os.Stderr, "saturation: %d rounds of %s for each of %d targets, %d connections, load by %s\n",
		o.rounds, o.duration, len(running), o.conns, generatorName(o.useWrk))
	if err := rounds(running, o.conns, func(r int) {
		fmt.Fprintf(os.Stderr, "  round %d: tuned %s rps, gateway memory %s, Redis %s\n", r+1,
			fmtInt(res.tuned.runs[r].rps()), fmtInt(res.mem.runs[r].rps()), fmtInt(res.redis.runs[r].rps()))
	}); err != nil {
		return nil, err
	}

	// Pipelining pays when many calls wait at once: the two Redis rows again at 64 connections.
	res.conns64 = 64
	res.redis64 = &target{name: "gateway, Redis store", p: gwRedis, key: benchKey, redis: true}
	res.piped64 = &target{name: "gateway, Redis, pipelined", p: gwPiped, key: benchKey, redis: true}
	fmt.Fprintf(os.Stderr, "the Redis store, plain and pipelined, at %d connections…\n", res.conns64)
	for _, t := range []*target{res.redis64, res.piped64} { // warm up the new connections
		if o.useWrk {
			_, _ = wrkRun(t.url(), t.key, o.threads, res.conns64, time.Second)
		} else {
			closedLoop(t.url(), t.key, res.conns64, time.Second)
		}
	}
	if err := rounds([]*target{res.redis64, res.piped64}, res.conns64, func(int) {}); err != nil {
		return nil, err
	}

	// Latency at half the tuned proxy's saturation rate, with the time the servers spent
	// ready to run but waiting for a CPU (what a shared machine adds to the tail).
	res.rate = res.tuned.rps() / 2
	fixed := []*target{res.stock, res.tuned, res.mem, res.redis, res.piped}
	fixedDur := max(o.duration*3/5, time.Second)
	fmt.Fprintf(os.Stderr, "latency at %s rps (half the tuned proxy's saturation)…\n", fmtInt(res.rate))
	waits := map[*target]time.Duration{}
	for r := range 3 {
		for i := range fixed {
			t := fixed[(i+r)%len(fixed)]
			w0 := schedWait(t.p.pid())
			if t.redis {
				w0 += schedWait(rds.pid())
			}
			l := openLoop(t.url(), t.key, res.rate, fixedDur)
			w1 := schedWait(t.p.pid())
			if t.redis {
				w1 += schedWait(rds.pid())
			}
			t.fixed = append(t.fixed, l)
			waits[t] += (w1 - w0) / time.Duration(max(l.requests, 1))
		}
	}

	// A light org: ten calls through the Redis gateway, then what its keys hold.
	light := newClient(1)
	for range lightCalls {
		if !fire(ctx, light, "http://"+gwRedis.addr+benchPath, lightKey) {
			return nil, fmt.Errorf("light org: a call through %s was not answered 2xx", gwRedis.name)
		}
	}
	if res.light, err = orgMemoryUsage(ctx, rc, lightOrg); err != nil {
		return nil, err
	}

	if o.manyOrgs > 0 {
		fmt.Fprintf(os.Stderr, "starting the gateway with %s orgs from a file…\n", fmtInt(float64(o.manyOrgs)))
		// A failure here is reported with the targets; the rest of the bench stands.
		res.many, res.manyErr = startManyOrgs(bin, tmp, upstream.addr, o.manyOrgs)
	}

	if o.profiles != "" {
		if err := profileHotPath(o, upstream.addr, rds.addr); err != nil {
			return nil, err
		}
	}

	fmt.Fprintf(out, "load by %s (%d connections), %d rounds of %s per target\n\n",
		generatorName(o.useWrk), o.conns, o.rounds, o.duration)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "saturation\trequests/s\t× tuned\t× stock\tp50\tp99\tCPU/request\tRedis CPU/request\tscripts/request\tEVALSHA/request\t")
	for _, t := range all {
		if !t.measured() {
			fmt.Fprintf(tw, "%s\tabsent\t\t\t\t\t\t\t\t\t\n", t.name)
			continue
		}
		var p50s, p99s []float64
		for _, run := range t.runs {
			p50s, p99s = append(p50s, float64(run.p50)), append(p99s, float64(run.p99))
		}
		xTuned, xStock := "-", "-"
		if t != direct {
			xTuned, xStock = fmt.Sprintf("%.2f", t.ratioTo(res.tuned)), fmt.Sprintf("%.2f", t.ratioTo(res.stock))
		}
		rcpu, script, calls := "-", "-", "-"
		if t.redis {
			n, _ := t.total()
			rcpu = fmtDur(time.Duration(t.redisTick) * tick / time.Duration(max(n, 1)))
			script = fmtDur(t.scriptPerCall())
			calls = fmt.Sprintf("%.2f", float64(t.evalsha)/float64(max(n, 1)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", t.name, fmtInt(t.rps()), xTuned, xStock,
			fmtDur(time.Duration(median(p50s))), fmtDur(time.Duration(median(p99s))), fmtDur(t.cpuPerCall()), rcpu, script, calls)
	}
	tw.Flush()
	fmt.Fprintln(out, "  (requests/s over all rounds; × tuned, × stock, p50 and p99: medians of the rounds' values; CPU of the")
	fmt.Fprintln(out, "   server's own process; Redis CPU of redis-server, scripts/request its time in EVALSHA from INFO commandstats)")
	var failed []string
	for _, t := range all {
		var n int64
		for _, r := range t.runs {
			n += r.failures
		}
		if n > 0 {
			failed = append(failed, fmt.Sprintf("%s %s", t.name, fmtInt(float64(n))))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(out, "  calls not answered 2xx (not counted above): %s\n", strings.Join(failed, "; "))
	}
	if o.peers.traefik == "" || o.peers.caddy == "" {
		fmt.Fprintln(out, "  (absent: the peer's binary was not found; bench/peers/build.sh DIR builds them, see docs/performance.md)")
	}
	var per []string
	for r := range o.rounds {
		b := res.tuned.runs[r].rps()
		per = append(per, fmt.Sprintf("memory %.2f / Redis %.2f", res.mem.runs[r].rps()/b, res.redis.runs[r].rps()/b))
	}
	fmt.Fprintf(out, "  per round, × tuned: %s\n", strings.Join(per, "; "))
	var jwtRatios []float64
	for r := range o.rounds {
		jwtRatios = append(jwtRatios, res.jwt.runs[r].rps()/res.mem.runs[r].rps())
	}
	fmt.Fprintf(out, "  JWT (warm cache) / API key, memory store: %.2f× (rounds: %s)\n", median(jwtRatios), fmtRatios(jwtRatios))
	var pipeRatios []float64
	for r := range o.rounds {
		pipeRatios = append(pipeRatios, res.piped64.runs[r].rps()/res.redis64.runs[r].rps())
	}
	fmt.Fprintf(out, "  at %d connections: Redis store %s requests/s, pipelined %s: %.2f× (rounds: %s)\n\n", res.conns64,
		fmtInt(res.redis64.rps()), fmtInt(res.piped64.rps()), res.piped64.ratioTo(res.redis64), fmtRatios(pipeRatios))

	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "at %s requests/s\tp50\tp99\tp99 added vs tuned\tvs stock\tCPU wait/request\t\n", fmtInt(res.rate))
	res.p99 = map[*target]time.Duration{}
	for _, t := range fixed {
		var p50s, p99s []float64
		var failures int64
		for _, f := range t.fixed {
			p50s, p99s = append(p50s, float64(f.p50)), append(p99s, float64(f.p99))
			failures += f.failures
		}
		res.p99[t] = time.Duration(median(p99s))
		vsTuned, vsStock := "-", "-"
		if t != res.tuned {
			vsTuned = fmtSigned(res.p99[t] - res.p99[res.tuned])
		}
		if t != res.stock {
			vsStock = fmtSigned(res.p99[t] - res.p99[res.stock])
		}
		if failures > 0 {
			vsTuned += fmt.Sprintf(" (%d failed)", failures)
		}
		if t.rps() < res.rate {
			vsTuned += " (rate above its saturation)" // its queue grows for the whole run
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", t.name, fmtDur(time.Duration(median(p50s))), fmtDur(res.p99[t]),
			vsTuned, vsStock, fmtDur(waits[t]/time.Duration(len(t.fixed))))
	}
	tw.Flush()
	fmt.Fprintf(out, "  (open loop, 3 interleaved runs of %s: latency from each request's scheduled start, medians of the runs;\n", fixedDur)
	fmt.Fprintln(out, "   CPU wait: time the server (and Redis) were ready to run but had no CPU, from /proc/<pid>/task/*/schedstat)")
	fmt.Fprintln(out)

	fmt.Fprintf(out, "Redis memory of an org after %d calls through the gateway: %s bytes in %d keys (window %s)\n",
		lightCalls, fmtInt(float64(res.light.total)), res.light.keys, fmtInt(float64(res.light.window)))
	switch {
	case res.manyErr != nil:
		fmt.Fprintf(out, "start with %s orgs from a file: failed: %v\n", fmtInt(float64(o.manyOrgs)), res.manyErr)
	case res.many.timedOut:
		fmt.Fprintf(out, "start with %s orgs from a file (%s MB, JSON, two keys each): not ready within %s, RSS %d MiB then (peak %d MiB)\n",
			fmtInt(float64(res.many.orgs)), fmtInt(float64(res.many.fileBytes)/1e6), manyOrgsWait, res.many.rss>>20, res.many.peak>>20)
	case o.manyOrgs > 0:
		fmt.Fprintf(out, "start with %s orgs from a file (%s MB, JSON, two keys each): ready in %s, RSS %d MiB (peak %d MiB)\n",
			fmtInt(float64(res.many.orgs)), fmtInt(float64(res.many.fileBytes)/1e6), res.many.ready.Round(time.Millisecond),
			res.many.rss>>20, res.many.peak>>20)
	}
	fmt.Fprintln(out)
	return res, nil
}

func generatorName(wrk bool) string {
	if wrk {
		return "wrk"
	}
	return "the Go generator"
}

// orgMemoryUsage sums MEMORY USAGE over the keys of org that exist.
func orgMemoryUsage(ctx context.Context, c *redis.Client, org string) (orgMemory, error) {
	var m orgMemory
	keys := limiter.NewRedisKeys(org)
	window := map[string]bool{}
	for _, k := range keys.Window() {
		window[k] = true
	}
	for _, key := range keys.All() {
		b, err := c.MemoryUsage(ctx, key).Result()
		if err == redis.Nil {
			continue
		}
		if err != nil {
			return m, fmt.Errorf("MEMORY USAGE %s: %w", key, err)
		}
		m.total += b
		m.keys++
		switch {
		case window[key]:
			m.window += b
		case key == keys.Calls:
			m.records += b
		}
	}
	return m, nil
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
