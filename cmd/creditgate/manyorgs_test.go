package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/creditgate/creditgate/gateway"
	"github.com/creditgate/creditgate/limiter"
)

// manyOrgsKey returns the j-th key (0 or 1) of org i in a generated orgs file, plain.
func manyOrgsKey(i, j int) string {
	return "key-" + strconv.Itoa(i) + "-" + strconv.Itoa(j) + "-0123456789abcdefghijklmnopqrstuv"
}

// writeManyOrgs writes n orgs to an orgs file in dir, JSON or YAML, and returns its path.
// Org i is Professional with i%500 users, one plain key and one as sha256:<hex>, but every
// 1000th has an explicit limit of i+1.
func writeManyOrgs(tb testing.TB, dir string, n int, yaml bool) string {
	tb.Helper()
	path := filepath.Join(dir, "orgs.json")
	if yaml {
		path = filepath.Join(dir, "orgs.yaml")
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if yaml {
		w.WriteString("orgs:\n")
	} else {
		w.WriteString("{\"orgs\": [\n")
	}
	for i := range n {
		sum := sha256.Sum256([]byte(manyOrgsKey(i, 1)))
		k0, k1 := manyOrgsKey(i, 0), "sha256:"+hex.EncodeToString(sum[:])
		plan := "\"edition\": \"crm-professional\", \"users\": " + strconv.Itoa(i%500)
		if i%1000 == 0 {
			plan = "\"limit\": " + strconv.Itoa(i+1)
		}
		switch {
		case yaml:
			fmt.Fprintf(w, "  - {\"id\": \"org-%d\", %s, \"keys\": [%s, \"%s\"]}\n", i, plan, k0, k1)
		default:
			if i > 0 {
				w.WriteString(",\n")
			}
			fmt.Fprintf(w, "  {\"id\": \"org-%d\", %s, \"keys\": [\"%s\", \"%s\"]}", i, plan, k0, k1)
		}
	}
	if !yaml {
		w.WriteString("\n]}\n")
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

// TestManyOrgsFile: 100,000 orgs from a JSON file load with their plans, their keys (plain
// and as digests) find them, and the gateway prepares none until it is called; a mistake
// in the last org is reported with its line.
func TestManyOrgsFile(t *testing.T) {
	const n = 100_000
	dir := t.TempDir()
	env := map[string]string{
		"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:9000",
		"CREDITGATE_ORGS_FILE":    writeManyOrgs(t, dir, n, false),
	}
	cfg, err := loadConfig(env)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.orgSet.dir
	if d.Len() != n {
		t.Fatalf("%d orgs, want %d", d.Len(), n)
	}
	for _, i := range []int{0, 1, 4321, 99_000, n - 1} {
		want := int64(10_000 + (i%500)*500)
		if i%1000 == 0 {
			want = int64(i + 1)
		}
		for j := range 2 {
			o, ok := d.ByKey(manyOrgsKey(i, j))
			if !ok || o.ID != "org-"+strconv.Itoa(i) {
				t.Fatalf("key %d of org %d finds %v", j, i, o)
			}
			if got := cfg.orgSet.LimitOf(o); got != want {
				t.Errorf("org %d: limit %d, want %d", i, got, want)
			}
		}
	}
	if _, ok := d.ByKey(manyOrgsKey(n, 0)); ok {
		t.Error("a key of no org finds one")
	}

	// The same orgs, the last one broken: the reader falls back to the one with lines.
	data, err := os.ReadFile(env["CREDITGATE_ORGS_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	last := fmt.Sprintf(`"id": "org-%d", "edition"`, n-1)
	bad := strings.Replace(string(data), last, fmt.Sprintf(`"id": "org-%d", "users": -1, "edition"`, n-1), 1)
	if err := os.WriteFile(env["CREDITGATE_ORGS_FILE"], []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = loadConfig(env)
	want := fmt.Sprintf(`orgs.json: line %d: org "org-%d": field "users": must be a non-negative integer, got "-1"`, n+1, n-1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want it to name %s", err, want)
	}
}

// BenchmarkStartMillionOrgs reads a JSON orgs file of 1,000,000 orgs (200 MB, two keys each)
// and builds the gateway on it, as start-up does; live-MB is the heap the orgs then hold.
// (For the YAML file: -bench 'StartMillionOrgs/yaml'.)
func BenchmarkStartMillionOrgs(b *testing.B) {
	for _, syntax := range []string{"json", "yaml"} {
		b.Run(syntax, func(b *testing.B) {
			env := map[string]string{
				"CREDITGATE_UPSTREAM_URL": "http://127.0.0.1:9000",
				"CREDITGATE_ORGS_FILE":    writeManyOrgs(b, b.TempDir(), 1_000_000, syntax == "yaml"),
			}
			store, err := limiter.NewMemoryStore(limiter.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var live uint64
			for b.Loop() {
				cfg, err := loadConfig(env)
				if err != nil {
					b.Fatal(err)
				}
				up, _ := url.Parse("http://127.0.0.1:9000")
				gw, err := gateway.New(gateway.Config{
					Upstream: up, Store: store, StoreInProcess: true, Costs: cfg.costTable, Orgs: cfg.orgSet.dir,
					LimitOf: cfg.orgSet.LimitOf, ConcurrencyOf: cfg.orgSet.ConcurrencyOf, AddonPlanOf: cfg.orgSet.AddonOf,
					Window: cfg.Window,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				live = m.HeapAlloc
				runtime.KeepAlive(gw)
				gw.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(live)/1e6, "live-MB")
		})
	}
}
