package limiter

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/creditgate/creditgate/internal/redistest"
)

// TestLuaTwins runs the formulas of lua/lib.lua on a real server and checks each against its
// Go twin: the scripts compute them from what only Redis holds, the memory store and the
// gateway from what they hold, and both must agree.
func TestLuaTwins(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	run := func(t *testing.T, body string, keys []string, args ...any) int64 {
		t.Helper()
		n, err := redis.NewScript(withLib(body)).Run(ctx, srv.Client, keys, args...).Int64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("capped_limit", func(t *testing.T) {
		tests := []struct {
			base, stored int64
			set          bool
			dflt, cap    int64
		}{
			{base: 100, dflt: 50, cap: 80},                           // nothing stored: the default
			{base: 100, stored: 200, set: true, dflt: 50, cap: 80},   // stored above the cap
			{base: 100, stored: 0, set: true, dflt: 50, cap: 80},     // stored 0: off
			{base: 0, dflt: 90, cap: 80},                             // a default above the cap
			{base: 10, stored: 30, set: true, dflt: 5, cap: 1 << 40}, // stored, under the cap
		}
		key := NewRedisKeys("twin").Addon
		for _, tt := range tests {
			srv.Client.Del(ctx, key)
			if tt.set {
				srv.Client.Set(ctx, key, tt.stored, 0)
			}
			got := run(t, "return capped_limit(tonumber(ARGV[1]), KEYS[1], ARGV[2], tonumber(ARGV[3]))",
				[]string{key}, tt.base, tt.dflt, tt.cap)
			if want := cappedLimit(tt.base, tt.stored, tt.set, tt.dflt, tt.cap); got != want {
				t.Errorf("%+v: capped_limit = %d, cappedLimit = %d", tt, got, want)
			}
		}
	})

	t.Run("above_free", func(t *testing.T) {
		tests := []struct{ free, from, to int64 }{
			{100, 50, 80},   // all free
			{100, 90, 130},  // crosses the allotment
			{100, 120, 150}, // all above
			{0, 0, 5},       // no allotment
			{100, 150, 120}, // a refund above the allotment
			{100, 110, 90},  // a refund that crosses it
		}
		for _, tt := range tests {
			got := run(t, "return above_free(tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))",
				nil, tt.free, tt.from, tt.to)
			if want := aboveFree(tt.free, tt.from, tt.to); got != want {
				t.Errorf("%+v: above_free = %d, aboveFree = %d", tt, got, want)
			}
		}
	})

	t.Run("day_of", func(t *testing.T) {
		for _, ms := range []int64{0, msPerDay - 1, msPerDay, -1, -msPerDay - 1, 1_767_225_600_123} {
			got := run(t, "return day_of(tonumber(ARGV[1]))", nil, ms)
			if want := dayOf(ms); got != want {
				t.Errorf("day_of(%d) = %d, dayOf = %d", ms, got, want)
			}
		}
	})
}

// TestScriptsCarryTheirHelpers: every helper a built script calls is defined in it, before
// its first call, and lib.lua's helpers all parse.
func TestScriptsCarryTheirHelpers(t *testing.T) {
	lib := mustRead("lib.lua")
	if got, want := len(libFuncs), strings.Count(lib, "\nlocal function "); got != want {
		t.Fatalf("parsed %d helpers of lib.lua, it defines %d", got, want)
	}
	entries, err := luaFS.ReadDir("lua")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "lib.lua" {
			continue
		}
		src := withLib(mustRead(e.Name()))
		for _, fn := range libFuncs {
			call := regexp.MustCompile(`[^a-z_]` + fn.name + `\(`).FindStringIndex(src)
			def := strings.Index(src, "local function "+fn.name+"(")
			if call != nil && (def < 0 || def > call[0]) {
				t.Errorf("%s calls %s without defining it first", e.Name(), fn.name)
			}
		}
	}
}
