package main

import (
	"strings"
	"testing"
	"time"
)

func TestGoalVerdict(t *testing.T) {
	tests := []struct {
		give goal
		want string
	}{
		{goal{value: 0.95, bound: 0.9}, "met"},
		{goal{value: 0.9, bound: 0.9}, "met"},
		{goal{value: 0.8, bound: 0.9}, "not met"},
		{goal{value: 9, bound: 10, atMost: true}, "met"},
		{goal{value: 11, bound: 10, atMost: true}, "not met"},
		{goal{value: 11, bound: 10, atMost: true}.missing("absent"), "n/a (absent)"},
	}
	for _, tt := range tests {
		if got := tt.give.verdict(); got != tt.want {
			t.Errorf("verdict of %+v = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// row returns a target measured in one round of rps requests/s at cpu per call.
func row(name string, rps int64, cpu time.Duration) *target {
	return &target{name: name, runs: []load{{requests: rps, elapsed: time.Second}},
		ticks: int64(cpu) * rps / int64(tick)}
}

func TestGoals(t *testing.T) {
	tuned := row("tuned", 10_000, 100*time.Microsecond)
	h := &httpResults{
		stock: row("stock", 8_000, 150*time.Microsecond), tuned: tuned,
		mem:    row("memory", 9_500, 105*time.Microsecond), // 0.95×, CPU 1.05×
		redis:  row("redis", 6_000, 150*time.Microsecond),  // 0.60×, CPU 1.50×
		capped: row("cap", 5_000, 170*time.Microsecond), piped: row("piped", 6_500, 140*time.Microsecond),
		jwt:          row("jwt", 9_000, 110*time.Microsecond),
		traefikRedis: &target{name: "traefik redis"}, // absent
		traefikMem:   row("traefik memory", 7_000, 120*time.Microsecond),
		caddy:        &target{name: "caddy"},
		redis64:      row("redis64", 6_000, 150*time.Microsecond), piped64: row("piped64", 7_000, 140*time.Microsecond),
		light: orgMemory{total: 900},
		many:  manyOrgs{orgs: manyOrgsTarget, ready: 6 * time.Second, peak: 500 << 20},
	}
	h.redis.evalUsec = 6_000 * 12 // 12µs a call
	h.capped.evalUsec = 5_000 * 20
	h.p99 = map[*target]time.Duration{tuned: 2 * time.Millisecond, h.redis: 2500 * time.Microsecond}
	got := map[string]string{}
	for _, g := range goals(h, 0, orgMemory{total: 13_000}) {
		got[g.name] = g.verdict()
	}
	want := map[string]string{
		"memory store ≥ 0.90× the tuned proxy's req/s":                          "met",
		"Redis store ≥ 0.70× the tuned proxy's req/s":                           "not met",
		"Redis store ≥ 1.30× Traefik's rateLimit with Redis":                    "n/a (absent)",
		"memory store ≥ 1.20× Traefik's rateLimit in-process":                   "met",
		"gateway CPU/call ≤ 1.10× the tuned proxy's (memory store)":             "met",
		"gateway CPU/call ≤ 1.35× the tuned proxy's (Redis store)":              "not met",
		"spend.lua ≤ 10µs of Redis per call (default layout, no cap)":           "not met",
		"p99 added at half the tuned proxy's saturation ≤ 1.00ms (Redis store)": "met",
		"pipelined ≥ 1.10× the plain Redis store at 64 connections":             "met",
		"Redis memory of an org after 10 calls ≤ 1.00 KiB":                      "met",
		"Redis memory of an org, saturated 24h window ≤ 12.50 KiB":              "not met",
		"1,000,000 orgs from a file: ready in ≤ 5s":                             "not met",
		"1,000,000 orgs from a file: peak RSS ≤ 600 MiB":                        "met",
	}
	if len(got) != len(want) {
		t.Errorf("%d goals, want %d: %v", len(got), len(want), got)
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s: %q, want %q", name, got[name], v)
		}
	}

	// -limiter-only: what needs the gateways is not run; spend.lua comes from the store runs.
	for _, g := range goals(nil, 8*time.Microsecond, orgMemory{total: 12_000}) {
		v := g.verdict()
		switch {
		case strings.HasPrefix(g.name, "spend.lua"), strings.Contains(g.name, "saturated"):
			if v != "met" {
				t.Errorf("-limiter-only: %s: %q, want met", g.name, v)
			}
		case v != "n/a (not run: -limiter-only)":
			t.Errorf("-limiter-only: %s: %q, want not run", g.name, v)
		}
	}
}
