package gateway

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/dunglas/httpsfv"

	"github.com/creditgate/creditgate/orgs"
)

// sfItem is one item of a RateLimit or RateLimit-Policy List: the policy it names and its
// parameters.
type sfItem struct {
	name   string
	params map[string]any
}

// draftParams are the parameters the draft defines for each field, and the type of each:
// q (quota), w (window, seconds), r (remaining), t (reset, seconds) are Integers, qu (quota
// unit) is a String, pk (partition key) a Byte Sequence.
var draftParams = map[string]map[string]string{
	"Ratelimit-Policy": {"q": "int", "qu": "string", "w": "int", "pk": "bytes"},
	"Ratelimit":        {"r": "int", "t": "int", "pk": "bytes"},
}

// parseDraftField parses field k of h as an RFC 8941 List with httpsfv and checks what the
// draft requires of it: Items (no Inner Lists) whose values are Strings, each named once,
// with only the draft's parameters, of their types, and Integers not below zero.
func parseDraftField(t *testing.T, h http.Header, k string) []sfItem {
	t.Helper()
	v := h.Values(k)
	if len(v) == 0 {
		t.Fatalf("no %s field", k)
	}
	list, err := httpsfv.UnmarshalList(v)
	if err != nil {
		t.Fatalf("%s %q is not a structured List: %v", k, v, err)
	}
	var items []sfItem
	seen := map[string]bool{}
	for _, m := range list {
		it, ok := m.(httpsfv.Item)
		if !ok {
			t.Fatalf("%s %q: member %#v is not an Item", k, v, m)
		}
		name, ok := it.Value.(string)
		if !ok {
			t.Fatalf("%s %q: item value %#v is not a String", k, v, it.Value)
		}
		if seen[name] {
			t.Fatalf("%s %q: policy %q named twice", k, v, name)
		}
		seen[name] = true
		params := map[string]any{}
		for _, p := range it.Params.Names() {
			pv, _ := it.Params.Get(p)
			want, known := draftParams[k][p]
			if !known {
				t.Fatalf("%s %q: parameter %q is not the draft's", k, v, p)
			}
			switch x := pv.(type) {
			case int64:
				if want != "int" || x < 0 {
					t.Fatalf("%s %q: %s=%d, want a non-negative %s", k, v, p, x, want)
				}
			case string:
				if want != "string" {
					t.Fatalf("%s %q: %s=%q, want %s", k, v, p, x, want)
				}
			default:
				t.Fatalf("%s %q: %s is %T", k, v, p, pv)
			}
			params[p] = pv
		}
		items = append(items, sfItem{name: name, params: params})
	}
	return items
}

// TestRateLimitFieldsStructured parses the default fields of real answers with an RFC 8941
// parser (httpsfv) and checks their items and parameters: a 200 and a 429 of an org with one
// policy, the usage API's answer, and a 200 and a concurrency 429 of an org with a cap on calls
// in flight, whose policy has two items. Every RateLimit item names a policy of
// RateLimit-Policy, and r and t agree with X-RateLimit-Remaining and -Reset.
func TestRateLimitFieldsStructured(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.ConcurrencyOf = func(o *orgs.Org) int64 {
			if o.ID == "acme" {
				return 2
			}
			return 0
		}
	})
	release, arrived := make(chan struct{}), make(chan struct{}, 2)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/crm/v2/org" { // held in flight until released
			arrived <- struct{}{}
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}
	tiny := map[string]string{"X-Api-Key": "tiny-key"}
	acme := map[string]string{"X-Api-Key": "acme-key"}
	type want struct {
		status int
		policy []sfItem
		limit  []sfItem
	}
	credits := func(q int64) sfItem { return sfItem{"credits", map[string]any{"q": q, "w": int64(86400)}} }
	concurrency := sfItem{"concurrency", map[string]any{"q": int64(2), "qu": "concurrent-requests"}}

	check := func(t *testing.T, resp *http.Response, w want) {
		t.Helper()
		if resp.StatusCode != w.status {
			t.Fatalf("status %d, want %d", resp.StatusCode, w.status)
		}
		policy := parseDraftField(t, resp.Header, "Ratelimit-Policy")
		limit := parseDraftField(t, resp.Header, "Ratelimit")
		if len(policy) != len(w.policy) || len(limit) != len(w.limit) {
			t.Fatalf("RateLimit-Policy %q, RateLimit %q: %d and %d items, want %d and %d",
				resp.Header.Get("Ratelimit-Policy"), resp.Header.Get("Ratelimit"), len(policy), len(limit), len(w.policy), len(w.limit))
		}
		for i, it := range policy {
			checkItem(t, "RateLimit-Policy", it, w.policy[i])
		}
		for i, it := range limit {
			checkItem(t, "RateLimit", it, w.limit[i])
			if it.name != policy[i].name {
				t.Errorf("RateLimit item %d names %q, its policy %q", i, it.name, policy[i].name)
			}
		}
		// The credits item says what X-RateLimit-* says.
		if r := strconv.FormatInt(limit[0].params["r"].(int64), 10); r != resp.Header.Get("X-Ratelimit-Remaining") {
			t.Errorf("r=%s, X-RateLimit-Remaining %s", r, resp.Header.Get("X-Ratelimit-Remaining"))
		}
		if tt := strconv.FormatInt(limit[0].params["t"].(int64), 10); tt != resp.Header.Get("X-Ratelimit-Reset") {
			t.Errorf("t=%s, X-RateLimit-Reset %s", tt, resp.Header.Get("X-Ratelimit-Reset"))
		}
	}
	remaining := func(r int64) sfItem { return sfItem{"credits", map[string]any{"r": r, "t": anyInt}} }

	t.Run("200", func(t *testing.T) {
		resp, _ := do(t, "GET", f.url+"/crm/v2/users", tiny, "")
		check(t, resp, want{200, []sfItem{credits(10)}, []sfItem{remaining(9)}})
	})
	t.Run("429", func(t *testing.T) {
		for range 9 {
			do(t, "GET", f.url+"/crm/v2/users", tiny, "")
		}
		resp, _ := do(t, "GET", f.url+"/crm/v2/users", tiny, "")
		check(t, resp, want{429, []sfItem{credits(10)}, []sfItem{remaining(0)}})
		if got := parseDraftField(t, resp.Header, "Ratelimit")[0].params["t"]; strconv.FormatInt(got.(int64), 10) != resp.Header.Get("Retry-After") {
			t.Errorf("t=%d, Retry-After %q", got, resp.Header.Get("Retry-After"))
		}
	})
	t.Run("usage", func(t *testing.T) {
		resp, _ := do(t, "GET", f.url+ownUsagePath, tiny, "")
		check(t, resp, want{200, []sfItem{credits(10)}, []sfItem{remaining(0)}})
	})
	t.Run("usage with a cap", func(t *testing.T) {
		resp, _ := do(t, "GET", f.url+ownUsagePath, acme, "")
		check(t, resp, want{200, []sfItem{credits(1000), concurrency},
			[]sfItem{remaining(1000), {"concurrency", map[string]any{"r": int64(2)}}}})
	})
	t.Run("200 with a cap", func(t *testing.T) {
		resp, _ := do(t, "GET", f.url+"/crm/v2/users", acme, "")
		check(t, resp, want{200, []sfItem{credits(1000), concurrency},
			[]sfItem{remaining(999), {"concurrency", map[string]any{"r": int64(1)}}}}) // this call in flight
	})
	t.Run("concurrency 429", func(t *testing.T) {
		done := make(chan struct{}, 2)
		for range 2 {
			go func() {
				defer func() { done <- struct{}{} }()
				do(t, "GET", f.url+"/crm/v2/org", acme, "")
			}()
			<-arrived
		}
		resp, _ := do(t, "GET", f.url+"/crm/v2/users", acme, "")
		close(release)
		<-done
		<-done
		check(t, resp, want{429, []sfItem{credits(1000), concurrency},
			[]sfItem{remaining(997), {"concurrency", map[string]any{"r": int64(0), "t": int64(1)}}}})
	})
}

// anyInt in a wanted item accepts any Integer: the reset depends on when the window's
// buckets free up.
var anyInt = struct{}{}

func checkItem(t *testing.T, field string, got, want sfItem) {
	t.Helper()
	if got.name != want.name || len(got.params) != len(want.params) {
		t.Errorf("%s item %q %v, want %q %v", field, got.name, got.params, want.name, want.params)
		return
	}
	for k, w := range want.params {
		g, ok := got.params[k]
		if !ok || (w != anyInt && g != w) {
			t.Errorf("%s item %q: %s=%v, want %v", field, got.name, k, g, w)
		}
	}
}
