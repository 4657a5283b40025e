package limiter

import (
	"context"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/redistest"
)

// layoutStores returns a memory store and a Redis store with the same options, and the
// Redis store's server.
func layoutStores(t *testing.T, opts Options) (*MemoryStore, *RedisStore, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	m, err := NewMemoryStore(opts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRedisStore(srv.Client, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, r, srv
}

// agree runs one Spend on both stores and fails unless they answer alike.
func agree(t *testing.T, m *MemoryStore, r *RedisStore, k Key, cost int64, at time.Time) (Decision, Decision) {
	t.Helper()
	ctx := context.Background()
	dm, em := m.Spend(ctx, k, cost, at)
	dr, er := r.Spend(ctx, k, cost, at)
	if (em == nil) != (er == nil) || dm != dr {
		t.Fatalf("Spend(%d at %d) differs:\nmemory %+v %v\nredis  %+v %v", cost, at.UnixMilli(), dm, em, dr, er)
	}
	return dm, dr
}

// agreeUsage fails unless both stores report the same usage at at.
func agreeUsage(t *testing.T, m *MemoryStore, r *RedisStore, k Key, at time.Time) {
	t.Helper()
	ctx := context.Background()
	um, em := m.Usage(ctx, k, at)
	ur, er := r.Usage(ctx, k, at)
	if em != nil || er != nil || !reflect.DeepEqual(um, ur) {
		t.Fatalf("Usage at %d differs:\nmemory %+v %v\nredis  %+v %v", at.UnixMilli(), um, em, ur, er)
	}
}

// windowLayout returns where the org's window keeps its buckets: "s" (sparse, in its pos
// hash), "4" or "8" (a ring of that many bytes a counter), "" (a ring written before the
// field was kept), or "none".
func windowLayout(t *testing.T, srv *redistest.Server, org string) string {
	t.Helper()
	keys := NewRedisKeys(org)
	if n, _ := srv.Client.Exists(context.Background(), keys.Pos).Result(); n == 0 {
		return "none"
	}
	w, _ := srv.Client.HGet(context.Background(), keys.Pos, "w").Result()
	return w
}

// TestRedisWindowLayouts walks one window through its layouts, agreeing with the memory
// store at each step: sparse while it holds few buckets, a ring of i32 counters past them,
// i64 once a bucket outgrows i32, and sparse again once it empties.
func TestRedisWindowLayouts(t *testing.T) {
	m, r, srv := layoutStores(t, Options{Window: 24 * time.Hour, Bucket: time.Minute})
	ctx := context.Background()
	const org = "layouts"
	k := NewKey(org, 1<<50).WithRule("users")
	t0 := time.UnixMilli(1_767_225_600_000)
	var debits [][2]Decision
	spend := func(cost int64, at time.Time) {
		dm, dr := agree(t, m, r, k.WithCall(NewCallID()), cost, at)
		debits = append(debits, [2]Decision{dm, dr})
	}
	for i := range 60 { // 60 buckets, two minutes apart: sparse
		spend(int64(i%5+1), t0.Add(time.Duration(i)*2*time.Minute))
	}
	if got := windowLayout(t, srv, org); got != "s" {
		t.Fatalf("after 60 buckets the window is %q, want sparse", got)
	}
	agreeUsage(t, m, r, k, t0.Add(2*time.Hour))
	for i := 60; i < 200; i++ { // past 64 buckets: a ring
		spend(int64(i%5+1), t0.Add(time.Duration(i)*2*time.Minute))
	}
	if got := windowLayout(t, srv, org); got != "4" {
		t.Fatalf("after 200 buckets the window is %q, want a ring of i32", got)
	}
	refund := func(i int) {
		if err := m.Refund(ctx, k, debits[i][0]); err != nil {
			t.Fatal(err)
		}
		if err := r.Refund(ctx, k, debits[i][1]); err != nil {
			t.Fatal(err)
		}
	}
	refund(0)   // the tail
	refund(199) // the head
	at := t0.Add(400 * time.Minute)
	agree(t, m, r, k, 0, at)
	agreeUsage(t, m, r, k, at)
	// A bucket past i32: the ring widens, keeping every count.
	spend(3_000_000_000, at)
	if got := windowLayout(t, srv, org); got != "8" {
		t.Fatalf("after a debit of 3e9 the window is %q, want a ring of i64", got)
	}
	agree(t, m, r, k, 0, at.Add(time.Minute))
	agreeUsage(t, m, r, k, at.Add(time.Minute))
	// Step through the day: the buckets expire one by one, then the window is empty and the
	// next debit starts a sparse one.
	for at := t0.Add(24 * time.Hour); at.Before(t0.Add(24*time.Hour + 420*time.Minute)); at = at.Add(7 * time.Minute) {
		agree(t, m, r, k, 0, at)
	}
	spend(2, t0.Add(48*time.Hour))
	if got := windowLayout(t, srv, org); got != "s" {
		t.Fatalf("a day after the window emptied it is %q, want sparse", got)
	}
	if n, _ := srv.Client.Exists(ctx, NewRedisKeys(org).Ring).Result(); n != 0 {
		t.Fatal("the ring outlived its window")
	}
	agreeUsage(t, m, r, k, t0.Add(48*time.Hour))
}

// TestRedisUpgradeFromRingLayout: a server holding windows written by the previous scripts
// (a ring of i64 counters with its total in its own key, testdata/spend-ring-v1.lua) keeps
// them exact. Debits written by the old spend.lua are then read, spent against, refunded and
// settled by the current scripts, as the memory store that saw the same debits answers.
func TestRedisUpgradeFromRingLayout(t *testing.T) {
	src, err := os.ReadFile("testdata/spend-ring-v1.lua")
	if err != nil {
		t.Fatal(err)
	}
	old := newScript(string(src))
	m, r, srv := layoutStores(t, Options{Window: time.Hour, Bucket: time.Minute, CallTTL: 24 * time.Hour})
	ctx := context.Background()
	const org = "upgrade"
	k := NewKey(org, 100).WithRule("users").WithAddons(60, 40, 40)
	t0 := time.UnixMilli(1_767_225_600_000 + 12_345)
	var debits [][2]Decision
	for i := range 10 { // old scripts: 10 debits 5 minutes apart, 55 credits
		kc := k.WithCall(NewCallID())
		at := t0.Add(time.Duration(i) * 5 * time.Minute)
		cost := int64(i + 1)
		dm, em := m.Spend(ctx, kc, cost, at)
		keys := kc.redis().spend
		args := r.spendCommand(kc.redis(), kc, cost, at, kc.Call)[3+len(keys):]
		raw, err := old.Run(ctx, srv.Client, keys, args...).Int64Slice()
		if err != nil || em != nil {
			t.Fatalf("debit %d: %v, %v", i, err, em)
		}
		dr, err := decodeSpend(raw, kc, kc.Call)
		if err != nil || dm != dr {
			t.Fatalf("old debit %d differs:\nmemory %+v\nredis  %+v %v", i, dm, dr, err)
		}
		debits = append(debits, [2]Decision{dm, dr})
	}
	keys := NewRedisKeys(org)
	if n, _ := srv.Client.Exists(ctx, keys.Used).Result(); n != 1 || windowLayout(t, srv, org) != "" {
		t.Fatalf("the old scripts did not write the old layout (used key %d, w %q)", n, windowLayout(t, srv, org))
	}
	at := t0.Add(47 * time.Minute)
	agreeUsage(t, m, r, k, at)
	// Settle debit 4 up, refund debit 2, spend on: all against the old ring.
	sm, err := m.Settle(ctx, k, debits[4][0], 9, at)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := r.Settle(ctx, k, debits[4][1], 9, at)
	if err != nil || sm != sr {
		t.Fatalf("settle differs:\nmemory %+v\nredis  %+v %v", sm, sr, err)
	}
	if err := m.Refund(ctx, k, debits[2][0]); err != nil {
		t.Fatal(err)
	}
	if err := r.Refund(ctx, k, debits[2][1]); err != nil {
		t.Fatal(err)
	}
	if n, _ := srv.Client.Exists(ctx, keys.Used).Result(); n != 0 {
		t.Fatal("the total stayed in its old key after a write")
	}
	for i := range 12 {
		at := t0.Add(50*time.Minute + time.Duration(i)*4*time.Minute)
		agree(t, m, r, k.WithCall(NewCallID()), int64(i%4), at)
		agreeUsage(t, m, r, k, at)
	}
	if got := windowLayout(t, srv, org); got != "" {
		t.Fatalf("the old ring became %q while it held credits; want it kept", got)
	}
	for day := int64(20454); day <= 20455; day++ {
		mm, _ := m.Metered(ctx, org, day, day)
		mr, _ := r.Metered(ctx, org, day, day)
		if !reflect.DeepEqual(mm, mr) {
			t.Fatalf("metered on %d: memory %v, redis %v", day, mm, mr)
		}
	}
}

// TestRedisSpendCommonPath counts the commands of a debit on the common path (a window that
// holds credits in the bucket debited, no cap, rule, add-ons or thresholds, the calls hash's
// expiry far enough): the window's HMGET and HSET, the record's HGET and HSET, and TIME (the
// server's clock, for the record's hash; in production now is that clock already). Counted,
// not timed: each command in a script costs about a microsecond of Redis CPU.
func TestRedisSpendCommonPath(t *testing.T) {
	_, r, srv := layoutStores(t, Options{Window: 24 * time.Hour, Bucket: time.Minute})
	ctx := context.Background()
	k := NewKey("common", 1000)
	t0 := time.UnixMilli(1_767_225_600_001) // not a multiple of 8: no sweep of old records
	for i := range 3 {
		if _, err := r.Spend(ctx, k, 1, t0.Add(time.Duration(i)*8*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if q, _ := srv.Client.HGet(ctx, NewRedisKeys("common").Pos, "q").Result(); q != "1" {
		t.Fatalf("pos q = %q after debits with no thresholds, want 1", q)
	}
	if err := srv.Client.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if d, err := r.Spend(ctx, k, 1, t0.Add(24*time.Millisecond)); err != nil || d.Used != 4 {
		t.Fatalf("Spend = %+v, %v", d, err)
	}
	info, err := srv.Client.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || name == "cmdstat_evalsha" || name == "cmdstat_eval" || name == "cmdstat_config|resetstat" {
			continue
		}
		n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		got[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	want := map[string]int64{"time": 1, "hmget": 1, "hget": 1, "hset": 2}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("one debit ran %v, want %v", got, want)
	}
}
