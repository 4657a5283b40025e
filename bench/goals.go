package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// goal is one of the bench's targets: a measured value against its bound.
type goal struct {
	name   string
	value  float64 // the measured value, in the unit of bound
	bound  float64
	atMost bool   // the value must be at most bound (else at least)
	absent string // why there is no measurement ("absent", "not run"), or ""
	shown  string // the measured value and its baseline, as printed
}

// verdict is "met", "not met", or "n/a (why)" when the value was not measured.
func (g goal) verdict() string {
	switch {
	case g.absent != "":
		return "n/a (" + g.absent + ")"
	case g.atMost && g.value <= g.bound, !g.atMost && g.value >= g.bound:
		return "met"
	}
	return "not met"
}

// missing returns g without a measurement, for the reason why.
func (g goal) missing(why string) goal {
	g.absent, g.shown = why, "-"
	return g
}

// printGoals writes one line per goal: the target, its verdict, and what was measured.
func printGoals(out io.Writer, goals []goal) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tresult\tmeasured (baseline)")
	for _, g := range goals {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", g.name, g.verdict(), g.shown)
	}
	tw.Flush()
}

// The targets' bounds. Sizes are binary: 1 KiB is 1,024 bytes.
const (
	memoryVsTuned     = 0.90 // requests/s of the memory-store gateway over the tuned proxy's
	redisVsTuned      = 0.70
	redisVsTraefik    = 1.3 // over Traefik's rateLimit with Redis
	memoryVsTraefik   = 1.2 // over Traefik's rateLimit in process
	cpuMemoryVsTuned  = 1.10
	cpuRedisVsTuned   = 1.35
	spendScriptMax    = 10 * time.Microsecond
	p99AddedMax       = time.Millisecond
	pipelinedVsPlain  = 1.1 // at 64 connections
	lightOrgMax       = 1 << 10
	saturatedOrgMax   = 12_800    // 12.5 KiB
	manyOrgsTarget    = 1_000_000 // orgs in the file
	manyOrgsReadyMax  = 5 * time.Second
	manyOrgsMemoryMax = 600 << 20
)

// goals judges the measurements against the targets. h is nil when the HTTP part did not
// run (-limiter-only); storeScript is spend.lua's time per call under RedisStore, saturated
// the memory of an org with a saturated window.
func goals(h *httpResults, storeScript time.Duration, saturated orgMemory) []goal {
	kib := func(b int64) string { return strconv.FormatFloat(float64(b)/1024, 'f', 2, 64) + " KiB" }
	// Each goal's measurement, or nil when it needs the HTTP part.
	type check struct {
		g       goal
		measure func(g *goal) // nil when g holds its value already
		alone   func(g *goal) // the measurement without the HTTP part, if any
		many    bool          // from the start with many orgs
	}
	rps := func(t, base *target) func(g *goal) {
		return func(g *goal) {
			if !t.measured() || !base.measured() {
				*g = g.missing("absent")
				return
			}
			g.value = t.ratioTo(base)
			g.shown = fmt.Sprintf("%.2f× (%s vs %s req/s)", g.value, fmtInt(t.rps()), fmtInt(base.rps()))
		}
	}
	cpu := func(t *target) func(g *goal) {
		return func(g *goal) {
			c, base := t.cpuPerCall(), h.tuned.cpuPerCall()
			g.value = float64(c) / float64(max(base, 1))
			g.shown = fmt.Sprintf("%.2f× (%s vs %s)", g.value, fmtDur(c), fmtDur(base))
		}
	}
	var r httpResults
	if h != nil {
		r = *h
	}
	checks := []check{
		{g: goal{name: fmt.Sprintf("memory store ≥ %.2f× the tuned proxy's req/s", memoryVsTuned), bound: memoryVsTuned},
			measure: rps(r.mem, r.tuned)},
		{g: goal{name: fmt.Sprintf("Redis store ≥ %.2f× the tuned proxy's req/s", redisVsTuned), bound: redisVsTuned},
			measure: rps(r.redis, r.tuned)},
		{g: goal{name: fmt.Sprintf("Redis store ≥ %.2f× Traefik's rateLimit with Redis", redisVsTraefik), bound: redisVsTraefik},
			measure: rps(r.redis, r.traefikRedis)},
		{g: goal{name: fmt.Sprintf("memory store ≥ %.2f× Traefik's rateLimit in-process", memoryVsTraefik), bound: memoryVsTraefik},
			measure: rps(r.mem, r.traefikMem)},
		{g: goal{name: fmt.Sprintf("gateway CPU/call ≤ %.2f× the tuned proxy's (memory store)", cpuMemoryVsTuned),
			bound: cpuMemoryVsTuned, atMost: true}, measure: cpu(r.mem)},
		{g: goal{name: fmt.Sprintf("gateway CPU/call ≤ %.2f× the tuned proxy's (Redis store)", cpuRedisVsTuned),
			bound: cpuRedisVsTuned, atMost: true}, measure: cpu(r.redis)},
		{g: goal{name: "spend.lua ≤ " + fmtDur(spendScriptMax) + " of Redis per call (default layout, no cap)",
			bound: float64(spendScriptMax), atMost: true}, measure: func(g *goal) {
			g.value = float64(r.redis.scriptPerCall())
			// commandstats counts wall time: a script preempted on a busy machine counts longer,
			// so the runs of RedisStore alone (no HTTP load beside Redis) are shown too.
			g.shown = fmt.Sprintf("%s (gateway's Redis row; a concurrency cap adds %s a call, its release included; RedisStore runs alone %s)",
				fmtDur(r.redis.scriptPerCall()), fmtSigned(r.capped.scriptPerCall()-r.redis.scriptPerCall()), fmtDur(storeScript))
		}, alone: func(g *goal) {
			g.value = float64(storeScript)
			g.shown = fmtDur(storeScript) + " (RedisStore runs, with the debit's record)"
		}},
		{g: goal{name: "p99 added at half the tuned proxy's saturation ≤ " + fmtDur(p99AddedMax) + " (Redis store)",
			bound: float64(p99AddedMax), atMost: true}, measure: func(g *goal) {
			g.value = float64(r.p99[r.redis] - r.p99[r.tuned])
			g.shown = fmt.Sprintf("%s (p99 %s vs %s at %s req/s)", fmtSigned(time.Duration(g.value)),
				fmtDur(r.p99[r.redis]), fmtDur(r.p99[r.tuned]), fmtInt(r.rate))
			if r.redis.rps() < r.rate {
				g.shown += ", above the Redis row's saturation"
			}
		}},
		{g: goal{name: fmt.Sprintf("pipelined ≥ %.2f× the plain Redis store at 64 connections", pipelinedVsPlain),
			bound: pipelinedVsPlain}, measure: func(g *goal) {
			g.value = r.piped64.ratioTo(r.redis64)
			g.shown = fmt.Sprintf("%.2f× (%s vs %s req/s)", g.value, fmtInt(r.piped64.rps()), fmtInt(r.redis64.rps()))
		}},
		{g: goal{name: fmt.Sprintf("Redis memory of an org after %d calls ≤ %s", lightCalls, kib(lightOrgMax)),
			bound: lightOrgMax, atMost: true}, measure: func(g *goal) {
			g.value = float64(r.light.total)
			g.shown = fmt.Sprintf("%s (%s bytes in %d keys: window %s, debit records %s)", kib(r.light.total),
				fmtInt(float64(r.light.total)), r.light.keys, fmtInt(float64(r.light.window)), fmtInt(float64(r.light.records)))
		}},
		{g: goal{name: "Redis memory of an org, saturated 24h window ≤ " + kib(saturatedOrgMax), bound: saturatedOrgMax,
			atMost: true, value: float64(saturated.total), shown: fmt.Sprintf("%s (%s bytes: window %s, debit records %s)",
				kib(saturated.total), fmtInt(float64(saturated.total)), fmtInt(float64(saturated.window)),
				fmtInt(float64(saturated.records)))}},
		{g: goal{name: fmt.Sprintf("%s orgs from a file: ready in ≤ %s", fmtInt(manyOrgsTarget), manyOrgsReadyMax),
			bound: float64(manyOrgsReadyMax), atMost: true}, measure: func(g *goal) {
			g.value = float64(r.many.ready)
			g.shown = r.many.ready.Round(time.Millisecond).String()
			if r.many.timedOut {
				g.shown = "not ready within " + g.shown
			}
		}, many: true},
		{g: goal{name: fmt.Sprintf("%s orgs from a file: peak RSS ≤ %d MiB", fmtInt(manyOrgsTarget), manyOrgsMemoryMax>>20),
			bound: manyOrgsMemoryMax, atMost: true}, measure: func(g *goal) {
			g.value = float64(r.many.peak)
			g.shown = fmt.Sprintf("%d MiB (%d MiB resident when ready)", r.many.peak>>20, r.many.rss>>20)
			if r.many.timedOut {
				g.shown = fmt.Sprintf("%d MiB when the wait ended, not ready: at least that", r.many.peak>>20)
			}
		}, many: true},
	}
	var out []goal
	for _, c := range checks {
		g := c.g
		switch {
		case c.measure == nil:
		case h == nil && c.alone != nil:
			c.alone(&g)
		case h == nil:
			g = g.missing("not run: -limiter-only")
		case c.many && h.manyErr != nil:
			g = g.missing("failed: " + h.manyErr.Error())
		case c.many && h.many.orgs == 0:
			g = g.missing("not run: -orgs 0")
		case c.many && h.many.orgs != manyOrgsTarget:
			g = g.missing(fmt.Sprintf("measured with -orgs %d, see above", h.many.orgs))
		default:
			c.measure(&g)
		}
		out = append(out, g)
	}
	return out
}
