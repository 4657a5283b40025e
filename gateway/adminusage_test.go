package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/redistest"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// storeKinds are the stores the usage tests run against: both must give the same answers.
var storeKinds = []struct {
	name string
	make func(t *testing.T, opts limiter.Options) Store
}{
	{"memory", func(t *testing.T, opts limiter.Options) Store {
		s, err := limiter.NewMemoryStore(opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"redis", func(t *testing.T, opts limiter.Options) Store {
		s, err := limiter.NewRedisStore(redistest.Start(t).Client, opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// usageFixture is a gateway on store with window opts, its admin listener, and a viewer token.
type usageFixture struct {
	*fixture
	store Store
	admin string
}

const viewerToken = "view-token"

func newUsageFixture(t *testing.T, store Store, window time.Duration, mod func(*Config)) *usageFixture {
	t.Helper()
	f := newFixture(t, func(c *Config) {
		c.Store = store
		c.Window = window
		if mod != nil {
			mod(c)
		}
	})
	tokens, err := ParseAdminTokens("viewer:" + viewerToken)
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw, Tokens: tokens}))
	t.Cleanup(admin.Close)
	return &usageFixture{fixture: f, store: store, admin: admin.URL}
}

func (f *usageFixture) usage(t *testing.T, org string) usageResponse {
	t.Helper()
	resp, body := do(t, "GET", f.admin+"/admin/v1/orgs/"+org+"/usage", map[string]string{"Authorization": "Bearer " + viewerToken}, "")
	if resp.StatusCode != 200 {
		t.Fatalf("usage of %s: %d %s", org, resp.StatusCode, body)
	}
	var u usageResponse
	if err := json.Unmarshal([]byte(body), &u); err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *usageFixture) hours(t *testing.T, org string) hoursResponse {
	t.Helper()
	resp, body := do(t, "GET", f.admin+"/admin/v1/orgs/"+org+"/usage/hours", map[string]string{"Authorization": "Bearer " + viewerToken}, "")
	if resp.StatusCode != 200 {
		t.Fatalf("usage hours of %s: %d %s", org, resp.StatusCode, body)
	}
	var h hoursResponse
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// windowUsed is what the store's window holds for org now (a Spend of 0 reads it).
func (f *usageFixture) windowUsed(t *testing.T, org string, limit int64) int64 {
	t.Helper()
	d, err := f.store.Spend(context.Background(), limiter.NewKey(org, limit), 0, time.UnixMilli(f.now.Load()))
	if err != nil {
		t.Fatal(err)
	}
	return d.Used
}

// mixedCalls is a workload of every cost the built-in table has, each with the rule that
// prices it.
var mixedCalls = []struct {
	method, path, body, rule string
	cost                     int64
}{
	{"GET", "/crm/v2/users", "", "users", 1},
	{"GET", "/crm/v3/Leads/deleted", "", "deleted_records", 2},
	{"GET", "/crm/v8/Leads?cvid=7", "", "records_cvid", 3},
	{"POST", "/crm/v2/Leads/1/actions/convert", "", "convert_lead", 5},
	{"POST", "/crm/v2/Leads", records(25), "insert_records", 3},
	{"POST", "/crm/bulk/v2/read", "", "bulk_read_initialize", 50},
}

// TestUsageMatchesWindow drives a mixed-cost workload through HTTP over 30 hours (with
// rejections and expiries) and checks, throughout, that the usage API's numbers equal what
// the window holds, that the hourly chart data equals the credits charged per hour and rule,
// and that reading usage is neither charged nor forwarded.
func TestUsageMatchesWindow(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) {
			const window = 24 * time.Hour
			f := newUsageFixture(t, sk.make(t, limiter.Options{Window: window, Bucket: time.Minute}), window, nil)
			type charge struct {
				at   int64 // unix ms
				cost int64
				rule string
			}
			var charges []charge
			key := map[string]string{"X-Api-Key": "acme-key", "Content-Type": "application/json"}
			rejected := 0
			for i := range 400 {
				c := mixedCalls[(i*5+i/7)%len(mixedCalls)]
				resp, body := do(t, c.method, f.url+c.path, key, c.body)
				switch resp.StatusCode {
				case 200:
					if got := resp.Header.Get("X-Credits-Charged"); got != itoa(c.cost) {
						t.Fatalf("%s %s charged %s, want %d", c.method, c.path, got, c.cost)
					}
					charges = append(charges, charge{f.now.Load(), c.cost, c.rule})
				case 429:
					rejected++
				default:
					t.Fatalf("%s %s: %d %s", c.method, c.path, resp.StatusCode, body)
				}
				f.now.Add((4*time.Minute + 31*time.Second).Milliseconds())
				if i%40 != 39 {
					continue
				}
				now := f.now.Load()
				var want int64
				wantHours := map[string]int64{} // slot start|rule -> credits
				for _, ch := range charges {
					b := ch.at - ch.at%time.Minute.Milliseconds()
					if b > now-window.Milliseconds()-time.Minute.Milliseconds() {
						want += ch.cost
					}
					s := b - b%time.Hour.Milliseconds()
					if s > now-window.Milliseconds()-time.Hour.Milliseconds() {
						wantHours[time.UnixMilli(s).UTC().Format(time.RFC3339)+"|"+ch.rule] += ch.cost
					}
				}
				forwarded := f.up.count()
				u := f.usage(t, "acme")
				if u.UsedCredits != want || u.UsedCredits != f.windowUsed(t, "acme", 1000) ||
					u.UnusedCredits != max(1000-want, 0) || u.OverallCredits != 1000 {
					t.Fatalf("after %d calls: usage %+v; want used %d (window holds %d)", i+1, u, want, f.windowUsed(t, "acme", 1000))
				}
				// The org's own usage says the same, and neither read is charged or forwarded.
				resp, body = do(t, "GET", f.url+ownUsagePath, map[string]string{"X-Api-Key": "acme-key"}, "")
				var own usageResponse
				if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &own) != nil || !reflect.DeepEqual(own, u) {
					t.Fatalf("own usage: %d %s; admin usage %+v", resp.StatusCode, body, u)
				}
				if f.up.count() != forwarded || f.windowUsed(t, "acme", 1000) != want || resp.Header.Get("X-Credits-Charged") != "0" {
					t.Fatal("a usage read was forwarded or charged")
				}
				gotHours := map[string]int64{}
				h := f.hours(t, "acme")
				var total int64
				for _, s := range h.Slots {
					var sum int64
					for r, c := range s.ByRule {
						gotHours[s.Start+"|"+r] += c
						sum += c
					}
					if sum != s.Credits {
						t.Fatalf("slot %s: credits %d, by rule sums to %d", s.Start, s.Credits, sum)
					}
					total += s.Credits
				}
				if len(h.Slots) < 24 || len(h.Slots) > 25 || total != h.TotalCredits || len(gotHours) != len(wantHours) {
					t.Fatalf("hours: %d slots, total %d (%d); by rule %v, want %v", len(h.Slots), total, h.TotalCredits, gotHours, wantHours)
				}
				for k, v := range wantHours {
					if gotHours[k] != v {
						t.Fatalf("hours %s = %d, want %d", k, gotHours[k], v)
					}
				}
			}
			if rejected == 0 || len(charges) == 0 {
				t.Fatalf("workload: %d allowed, %d rejected; want both", len(charges), rejected)
			}
		})
	}
}

// TestUsageRefundLeavesTheChart: a call refunded because the upstream could not be reached
// appears neither in used_credits nor in the hourly data.
func TestUsageRefundLeavesTheChart(t *testing.T) {
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) {
			f := newUsageFixture(t, sk.make(t, limiter.Options{Window: 24 * time.Hour, Bucket: time.Minute}), 24*time.Hour, nil)
			do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "acme-key"}, "")
			f.up.Close() // refused connections from now on: 502, refunded
			if resp, _ := do(t, "POST", f.url+"/crm/bulk/v2/read", map[string]string{"X-Api-Key": "acme-key"}, ""); resp.StatusCode != 502 {
				t.Fatalf("status %d, want 502", resp.StatusCode)
			}
			if u := f.usage(t, "acme"); u.UsedCredits != 1 {
				t.Fatalf("used %d, want 1", u.UsedCredits)
			}
			if h := f.hours(t, "acme"); h.TotalCredits != 1 || len(h.Rules) != 1 || h.Rules[0] != "users" {
				t.Fatalf("hours total %d rules %v, want 1 credit of users", h.TotalCredits, h.Rules)
			}
		})
	}
}

// TestUsageFields checks every field of the usage API on a fixed window, the add-on seam, the
// concurrency in use, and the errors of the usage endpoints.
func TestUsageFields(t *testing.T) {
	release := make(chan struct{})
	f := newUsageFixture(t, sk0(t), 24*time.Hour, func(c *Config) {
		c.ConcurrencyOf = func(o *orgs.Org) int64 { return o.Concurrency }
		c.AdditionalOf = func(o *orgs.Org) int64 { return o.Addon }
		c.LimitOf = func(o *orgs.Org) int64 { return o.Limit + o.Addon }
	})
	list, err := orgs.Parse("acme:limit=1000,addon=500,concurrency=4,edition=crm-professional,keys=acme-key;idle:limit=7,keys=idle-key")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := orgs.NewDirectory(list)
	if err != nil {
		t.Fatal(err)
	}
	f.gw.SetOrgs(dir)
	arrived := make(chan struct{}, 1)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/crm/v2/users" {
			arrived <- struct{}{}
			<-release
		}
	}
	key := map[string]string{"X-Api-Key": "acme-key"}
	do(t, "POST", f.url+"/crm/bulk/v2/read", key, "") // 50 credits at t0
	f.now.Add((90 * time.Minute).Milliseconds())
	done := make(chan struct{})
	go func() { // one call in flight while usage is read
		defer close(done)
		do(t, "GET", f.url+"/crm/v2/users", key, "")
	}()
	<-arrived

	u := f.usage(t, "acme")
	nextFree := t0.Truncate(time.Minute).Add(time.Minute + 24*time.Hour).UTC().Format(time.RFC3339)
	want := usageResponse{
		Org: "acme", Edition: "crm-professional", DailyFreeLimit: 1000, AdditionalCredits: 500, OverallCredits: 1500,
		UsedCredits: 51, UnusedCredits: 1449, PercentUsed: 3.4, ConcurrencyLimit: 4, ConcurrencyInUse: 1,
		WindowSeconds: 86400, NextFreeAt: &nextFree, AsOf: t0.Add(90 * time.Minute).UTC().Format(time.RFC3339),
	}
	if u.NextFreeAt == nil || *u.NextFreeAt != nextFree {
		t.Fatalf("next_free_at %v, want %s", u.NextFreeAt, nextFree)
	}
	u.NextFreeAt = want.NextFreeAt
	if u != want {
		t.Fatalf("usage\n%+v\nwant\n%+v", u, want)
	}
	close(release)
	<-done

	// Every field of the usage API is in the body; an org with nothing consumed has next_free_at null.
	_, body := do(t, "GET", f.admin+"/admin/v1/orgs/idle/usage", map[string]string{"Authorization": "Bearer " + viewerToken}, "")
	for _, field := range []string{"org", "edition", "daily_free_limit", "additional_credits", "overall_credits", "used_credits",
		"unused_credits", "percent_used", "concurrency_limit", "window_seconds", "next_free_at"} {
		if !strings.Contains(body, `"`+field+`":`) {
			t.Errorf("field %s missing from %s", field, body)
		}
	}
	if !strings.Contains(body, `"next_free_at":null`) || !strings.Contains(body, `"used_credits":0`) {
		t.Errorf("idle org: %s", body)
	}

	viewer := map[string]string{"Authorization": "Bearer " + viewerToken}
	tests := []struct {
		name, method, url string
		hdr               map[string]string
		wantStatus        int
		wantCode          string
	}{
		{"admin without token", "GET", f.admin + "/admin/v1/orgs/acme/usage", nil, 401, "AUTHENTICATION_FAILURE"},
		{"admin bad token", "GET", f.admin + "/admin/v1/orgs/acme/usage", map[string]string{"Authorization": "Bearer nope"}, 401, "INVALID_TOKEN"},
		{"unknown org", "GET", f.admin + "/admin/v1/orgs/nobody/usage", viewer, 404, "NOT_FOUND"},
		{"unknown org hours", "GET", f.admin + "/admin/v1/orgs/nobody/usage/hours", viewer, 404, "NOT_FOUND"},
		{"own usage without key", "GET", f.url + ownUsagePath, nil, 401, "AUTHENTICATION_FAILURE"},
		{"own usage with bad key", "GET", f.url + ownUsagePath, map[string]string{"X-Api-Key": "nope"}, 401, "INVALID_TOKEN"},
		{"own usage POST", "POST", f.url + ownUsagePath, key, 405, "METHOD_NOT_ALLOWED"},
		{"own hours", "GET", f.url + ownUsageHoursPath, key, 200, ""},
		{"orgs list", "GET", f.admin + "/admin/v1/orgs", viewer, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forwarded := f.up.count()
			resp, body := do(t, tt.method, tt.url, tt.hdr, "")
			if resp.StatusCode != tt.wantStatus || (tt.wantCode != "" && !strings.Contains(body, `"code":"`+tt.wantCode+`"`)) {
				t.Fatalf("%d %s; want %d %s", resp.StatusCode, body, tt.wantStatus, tt.wantCode)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || f.up.count() != forwarded {
				t.Fatalf("content type %q, forwarded %d calls", resp.Header.Get("Content-Type"), f.up.count()-forwarded)
			}
		})
	}
	_, body = do(t, "GET", f.admin+"/admin/v1/orgs", viewer, "")
	if strings.TrimSpace(body) != `{"orgs":[{"org":"acme","edition":"crm-professional"},{"org":"idle","edition":""}]}` {
		t.Errorf("orgs list: %s", body)
	}
}

// sk0 is a memory store with a 24h window and one-minute buckets.
func sk0(t *testing.T) Store {
	return storeKinds[0].make(t, limiter.Options{Window: 24 * time.Hour, Bucket: time.Minute})
}

var (
	policyRe = regexp.MustCompile(`^"credits";q=(\d+);w=(\d+)(, "concurrency";q=\d+;qu="concurrent-requests")?$`)
	fieldRe  = regexp.MustCompile(`^"credits";r=(\d+);t=(\d+)(, "concurrency";r=(\d+)(;t=1)?)?$`)
)

// checkLimitFields checks that the IETF fields and the X-RateLimit-* fields of one response
// say the same, and returns remaining and t.
func checkLimitFields(t *testing.T, h http.Header, limit int64, window time.Duration) (remaining, wait int64) {
	t.Helper()
	p := policyRe.FindStringSubmatch(h.Get("Ratelimit-Policy"))
	f := fieldRe.FindStringSubmatch(h.Get("Ratelimit"))
	if p == nil || f == nil {
		t.Fatalf("RateLimit-Policy %q, RateLimit %q: not the README's syntax", h.Get("Ratelimit-Policy"), h.Get("Ratelimit"))
	}
	if p[1] != itoa(limit) || p[2] != itoa(int64(window/time.Second)) || h.Get("X-Ratelimit-Limit") != p[1] {
		t.Fatalf("policy %q, X-RateLimit-Limit %q; want q=%d w=%d", h.Get("Ratelimit-Policy"), h.Get("X-Ratelimit-Limit"), limit, int64(window/time.Second))
	}
	if h.Get("X-Ratelimit-Remaining") != f[1] || h.Get("X-Ratelimit-Reset") != f[2] {
		t.Fatalf("RateLimit %q but X-RateLimit-Remaining %q, X-RateLimit-Reset %q", h.Get("Ratelimit"), h.Get("X-Ratelimit-Remaining"), h.Get("X-Ratelimit-Reset"))
	}
	if f[3] != "" && p[3] == "" { // a refusal for credits does not count the calls in flight
		t.Fatalf("RateLimit %q names a concurrency policy RateLimit-Policy %q lacks", h.Get("Ratelimit"), h.Get("Ratelimit-Policy"))
	}
	if f[5] != "" && h.Get("Retry-After") != "1" {
		t.Fatalf("concurrency t=1 but Retry-After %q", h.Get("Retry-After"))
	}
	remaining, _ = strconv.ParseInt(f[1], 10, 64)
	wait, _ = strconv.ParseInt(f[2], 10, 64)
	return remaining, wait
}

// TestRateLimitFieldsConsistent runs a short window (20s, 1s buckets) on both stores: on every
// 200 and 429 the IETF fields and the X-RateLimit-* fields agree with each other and with
// the usage API; on 429, Retry-After equals t and is the exact wait: a second earlier the
// call is still refused, at Retry-After it is admitted.
func TestRateLimitFieldsConsistent(t *testing.T) {
	const window = 20 * time.Second
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) {
			f := newUsageFixture(t, sk.make(t, limiter.Options{Window: window, Bucket: time.Second}), window, func(c *Config) {
				c.ConcurrencyOf = func(o *orgs.Org) int64 { return 3 }
			})
			key := map[string]string{"X-Api-Key": "tiny-key", "Content-Type": "application/json"}
			var got200, got429 int
			for i := range 60 {
				c := mixedCalls[i%5] // 1, 2, 3, 5, 3 credits: never more than tiny's 10
				resp, body := do(t, c.method, f.url+c.path, key, c.body)
				remaining, wait := checkLimitFields(t, resp.Header, 10, window)
				u := f.usage(t, "tiny")
				if remaining != u.UnusedCredits {
					t.Fatalf("call %d: remaining %d, usage says unused %d", i, remaining, u.UnusedCredits)
				}
				switch resp.StatusCode {
				case 200:
					got200++
					if !strings.HasSuffix(resp.Header.Get("Ratelimit"), `, "concurrency";r=2`) { // cap 3, this call in flight
						t.Fatalf("call %d: RateLimit %q, want the concurrency item with r=2", i, resp.Header.Get("Ratelimit"))
					}
					// t is the wait until the oldest credits free up, as next_free_at says.
					if u.NextFreeAt == nil {
						t.Fatalf("call %d: nothing to free after an allowed call", i)
					}
					at, _ := time.Parse(time.RFC3339, *u.NextFreeAt)
					if want := ceilSeconds(at.Sub(time.UnixMilli(f.now.Load()))); wait != want && wait != want-1 {
						t.Fatalf("call %d: t=%d, next_free_at in %ds", i, wait, want)
					}
				case 429:
					got429++
					if !strings.Contains(body, "TOO_MANY_REQUESTS") || resp.Header.Get("Retry-After") != itoa(wait) || wait < 1 {
						t.Fatalf("call %d: 429 %s with Retry-After %q, t=%d", i, body, resp.Header.Get("Retry-After"), wait)
					}
					if resp.Header.Get("X-Credits-Charged") != "0" {
						t.Fatalf("call %d: a refused call charged %s", i, resp.Header.Get("X-Credits-Charged"))
					}
					// A second before Retry-After the call is still refused; at Retry-After it fits.
					f.now.Add((time.Duration(wait-1) * time.Second).Milliseconds())
					if resp, _ := do(t, c.method, f.url+c.path, key, c.body); resp.StatusCode != 429 {
						t.Fatalf("call %d: admitted a second before Retry-After (%ds): %d", i, wait, resp.StatusCode)
					}
					f.now.Add(time.Second.Milliseconds())
					resp, _ := do(t, c.method, f.url+c.path, key, c.body)
					if resp.StatusCode != 200 {
						t.Fatalf("call %d: refused at Retry-After (%ds): %d", i, wait, resp.StatusCode)
					}
					checkLimitFields(t, resp.Header, 10, window)
				default:
					t.Fatalf("call %d: %d %s", i, resp.StatusCode, body)
				}
				f.now.Add(700)
			}
			if got200 == 0 || got429 < 5 {
				t.Fatalf("%d allowed, %d refused; want both", got200, got429)
			}
		})
	}
}

// TestRateLimitFieldsOnConcurrency429: a call refused by the org's cap on calls in flight
// names the concurrency item with r=0 and t=1, as its Retry-After says.
func TestRateLimitFieldsOnConcurrency429(t *testing.T) {
	f := newUsageFixture(t, sk0(t), 24*time.Hour, func(c *Config) {
		c.ConcurrencyOf = func(o *orgs.Org) int64 { return 1 }
	})
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	f.up.handler = func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}
	key := map[string]string{"X-Api-Key": "acme-key"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		do(t, "GET", f.url+"/crm/v2/users", key, "")
	}()
	<-arrived
	resp, body := do(t, "GET", f.url+"/crm/v2/users", key, "")
	close(release)
	<-done
	if resp.StatusCode != 429 || !strings.Contains(body, `"scope":"org"`) {
		t.Fatalf("%d %s; want the concurrency 429", resp.StatusCode, body)
	}
	remaining, _ := checkLimitFields(t, resp.Header, 1000, 24*time.Hour)
	if remaining != 999 || !strings.HasSuffix(resp.Header.Get("Ratelimit"), `, "concurrency";r=0;t=1`) || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("RateLimit %q, Retry-After %q", resp.Header.Get("Ratelimit"), resp.Header.Get("Retry-After"))
	}
}

// brokenUsage fails every usage read, like an unreachable Redis.
type brokenUsage struct{ brokenStore }

func (brokenUsage) Usage(context.Context, limiter.Key, time.Time) (limiter.Usage, error) {
	return limiter.Usage{}, errors.New("dial tcp 127.0.0.1:1: connection refused")
}

// TestUsageStoreFailures: a store that cannot read answers 503 (with Retry-After), one that
// cannot report usage at all 501; both in the error shape, neither leaking the store error.
func TestUsageStoreFailures(t *testing.T) {
	tests := []struct {
		name       string
		store      Store
		lacks      StoreFeature
		wantStatus int
		wantCode   string
	}{
		{"unreachable", brokenUsage{}, lacksAll &^ StoreUsage, 503, "SERVICE_UNAVAILABLE"},
		{"no usage reader", brokenStore{}, lacksAll, 501, "NOT_SUPPORTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Store, c.StoreLacks = tt.store, tt.lacks })
			tokens, _ := ParseAdminTokens("viewer:" + viewerToken)
			admin := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw, Tokens: tokens}))
			defer admin.Close()
			for _, target := range []struct{ url, hdr, val string }{
				{f.url + ownUsagePath, "X-Api-Key", "acme-key"},
				{admin.URL + "/admin/v1/orgs/acme/usage", "Authorization", "Bearer " + viewerToken},
				{admin.URL + "/admin/v1/orgs/acme/usage/hours", "Authorization", "Bearer " + viewerToken},
			} {
				resp, body := do(t, "GET", target.url, map[string]string{target.hdr: target.val}, "")
				if resp.StatusCode != tt.wantStatus || !strings.Contains(body, `"code":"`+tt.wantCode+`"`) || strings.Contains(body, "127.0.0.1") {
					t.Errorf("%s: %d %s; want %d %s", target.url, resp.StatusCode, body, tt.wantStatus, tt.wantCode)
				}
				if tt.wantStatus == 503 && resp.Header.Get("Retry-After") == "" {
					t.Errorf("%s: 503 without Retry-After", target.url)
				}
			}
		})
	}
}
