package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creditgate/creditgate/internal/metricstest"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
	"github.com/creditgate/creditgate/plans"
)

const (
	viewerTok = "viewer-secret-token"
	adminTok  = "admin-secret-token"
	superTok  = "super-secret-token"
)

// billingFixture is the gateway fixture with add-ons for "tiny" (free 10, cap 1,000) and
// "pro", an admin listener with one token per role, and a log that records everything.
type billingFixture struct {
	*fixture
	admin string
	logs  *observer.ObservedLogs
}

func newBillingFixture(t *testing.T, mod func(*Config)) *billingFixture {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	f := newFixture(t, func(c *Config) {
		c.Logger = zap.New(core)
		c.AddonPlanOf = func(o *orgs.Org) plans.Addon {
			switch o.ID {
			case "tiny":
				return plans.Addon{Edition: "crm-standard", Free: 10, Cap: 1000}
			case "pro":
				return plans.Addon{Edition: "crm-professional", Free: 11000, Addon: 500, Cap: 489000}
			}
			return plans.Addon{Free: 1000}
		}
		if mod != nil {
			mod(c)
		}
	})
	tokens, err := ParseAdminTokens("viewer:" + viewerTok + ";admin:" + adminTok + ";super-admin:" + superTok)
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw, Tokens: tokens}))
	t.Cleanup(admin.Close)
	return &billingFixture{fixture: f, admin: admin.URL, logs: logs}
}

func (f *billingFixture) adminCall(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	hdr := map[string]string{"Content-Type": "application/json"}
	if token != "" {
		hdr["Authorization"] = "Bearer " + token
	}
	resp, b := do(t, method, f.admin+path, hdr, body)
	return resp.StatusCode, b
}

// TestAddonRoles: viewers read but cannot change an add-on; a wrong or missing token gets 401;
// admins and super-admins change it; refusals over the cap are 422 with the cap; no token
// reaches the logs.
func TestAddonRoles(t *testing.T) {
	f := newBillingFixture(t, nil)
	tests := []struct {
		name, method, path, token, body string
		wantStatus                      int
		wantBody                        string
	}{
		{"viewer cannot set", "PUT", "/admin/v1/orgs/tiny/addon", viewerTok, `{"limit":5}`, 403, `"code":"NO_PERMISSION"`},
		{"viewer cannot switch off", "DELETE", "/admin/v1/orgs/tiny/addon", viewerTok, ``, 403, `"code":"NO_PERMISSION"`},
		{"wrong token", "PUT", "/admin/v1/orgs/tiny/addon", "not-a-token", `{"limit":5}`, 401, `"code":"INVALID_TOKEN"`},
		{"no token", "PUT", "/admin/v1/orgs/tiny/addon", "", `{"limit":5}`, 401, `"code":"AUTHENTICATION_FAILURE"`},
		{"wrong token reads nothing", "GET", "/admin/v1/orgs/tiny/billing", "not-a-token", ``, 401, `"code":"INVALID_TOKEN"`},
		{"over the cap", "PUT", "/admin/v1/orgs/tiny/addon", adminTok, `{"limit":1001}`, 422,
			`{"code":"INVALID_DATA","details":{"cap":1000,"limit":1001},`},
		{"negative", "PUT", "/admin/v1/orgs/tiny/addon", adminTok, `{"limit":-1}`, 422, `"cap":1000`},
		{"no add-ons for the edition", "PUT", "/admin/v1/orgs/acme/addon", superTok, `{"limit":1}`, 422,
			`{"code":"INVALID_DATA","details":{"cap":0,"edition":""},`},
		{"not a number", "PUT", "/admin/v1/orgs/tiny/addon", adminTok, `{"limit":"5"}`, 400, `"code":"INVALID_DATA"`},
		{"no limit", "PUT", "/admin/v1/orgs/tiny/addon", adminTok, `{}`, 400, `"code":"INVALID_DATA"`},
		{"unknown org", "PUT", "/admin/v1/orgs/nobody/addon", adminTok, `{"limit":5}`, 404, `"code":"NOT_FOUND"`},
		{"admin sets", "PUT", "/admin/v1/orgs/tiny/addon", adminTok, `{"limit":5}`, 200,
			`"daily_free_limit":10,"additional_credits":5,"addon_cap":1000,"overall_credits":15`},
		{"super-admin sets the cap", "PUT", "/admin/v1/orgs/tiny/addon", superTok, `{"limit":1000}`, 200, `"overall_credits":1010`},
		{"viewer reads billing", "GET", "/admin/v1/orgs/tiny/billing", viewerTok, ``, 200, `"org":"tiny"`},
		{"viewer quotes", "GET", "/admin/v1/quote?addon_credits=1", viewerTok, ``, 200, `"daily_amount_micros":140`},
		{"admin switches off", "DELETE", "/admin/v1/orgs/tiny/addon", adminTok, ``, 200, `"additional_credits":0,"addon_cap":1000,"overall_credits":10`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := f.adminCall(t, tt.method, tt.path, tt.token, tt.body)
			if status != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("%d %s; want %d containing %s", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	if f.logs.FilterMessage("add-on limit set").Len() != 3 {
		t.Errorf("want one log line per add-on change, got %d", f.logs.FilterMessage("add-on limit set").Len())
	}
	for _, e := range f.logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += " " + k + "=" + toString(v)
		}
		for _, tok := range []string{viewerTok, adminTok, superTok, "not-a-token"} {
			if strings.Contains(line, tok) {
				t.Errorf("a token reached the log: %s", line)
			}
		}
	}
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAddonThroughProxy: an add-on set through the admin API raises the org's limit on its
// next call; the credits above the free allotment show in the billing report, priced by the
// slabs; switching add-ons off brings the free limit back.
func TestAddonThroughProxy(t *testing.T) {
	f := newBillingFixture(t, nil)
	key := map[string]string{"X-Api-Key": "tiny-key"}
	call := func() (int, string) {
		resp, _ := do(t, "GET", f.url+"/crm/v2/users", key, "")
		return resp.StatusCode, resp.Header.Get("X-Ratelimit-Limit")
	}
	for i := range 10 {
		if s, _ := call(); s != 200 {
			t.Fatalf("free call %d: %d", i+1, s)
		}
	}
	if s, lim := call(); s != 429 || lim != "10" {
		t.Fatalf("11th call: %d limit %s, want 429 at limit 10", s, lim)
	}
	if s, b := f.adminCall(t, "PUT", "/admin/v1/orgs/tiny/addon", adminTok, `{"limit":5}`); s != 200 {
		t.Fatalf("PUT addon: %d %s", s, b)
	}
	for i := range 5 {
		if s, lim := call(); s != 200 || lim != "15" {
			t.Fatalf("add-on call %d: %d limit %s, want 200 at 15", i+1, s, lim)
		}
	}
	if s, _ := call(); s != 429 {
		t.Fatalf("past the add-on: %d, want 429", s)
	}
	resp, _ := do(t, "GET", f.url+"/crm/v2/users", key, "")
	if p := resp.Header.Get("Ratelimit-Policy"); p != `"credits";q=15;w=86400` {
		t.Errorf("RateLimit-Policy %q, want the limit with the add-on", p)
	}

	s, body := f.adminCall(t, "GET", "/admin/v1/orgs/tiny/billing?from=2025-12-31&to=2026-01-01", viewerTok, "")
	want := `{"org":"tiny","from":"2025-12-31","to":"2026-01-01","currency":"USD","days":[` +
		`{"date":"2025-12-31","addon_credits":0,"amount_micros":0,"slabs":[]},` +
		`{"date":"2026-01-01","addon_credits":5,"amount_micros":700,"slabs":[{"credits":5,"price_per_1000_micros":140000,"amount_micros":700}]}],` +
		`"total_addon_credits":5,"total_amount_micros":700}`
	if s != 200 || strings.TrimSpace(body) != want {
		t.Fatalf("billing: %d\n%s\nwant\n%s", s, body, want)
	}
	s, body = f.adminCall(t, "GET", "/admin/v1/orgs/tiny/billing?from=2026-01-01&to=2026-01-01&format=csv", viewerTok, "")
	wantCSV := "date,addon_credits,slab1_credits_at_0.14_per_1000,slab1_amount_micros,slab2_credits_at_0.06_per_1000,slab2_amount_micros," +
		"slab3_credits_at_0.05_per_1000,slab3_amount_micros,slab4_credits_at_0.025_per_1000,slab4_amount_micros,amount_micros\n" +
		"2026-01-01,5,5,700,0,0,0,0,0,0,700\n" +
		"total,5,,,,,,,,,700\n"
	if s != 200 || body != wantCSV {
		t.Fatalf("billing CSV: %d\n%s\nwant\n%s", s, body, wantCSV)
	}

	if s, b := f.adminCall(t, "DELETE", "/admin/v1/orgs/tiny/addon", adminTok, ""); s != 200 {
		t.Fatalf("DELETE addon: %d %s", s, b)
	}
	if s, lim := call(); s != 429 || lim != "10" {
		t.Fatalf("add-ons off: %d limit %s, want 429 at 10", s, lim)
	}
}

// TestAddonConfiguredUntilSet: the configured add-on applies until an admin sets one.
func TestAddonConfiguredUntilSet(t *testing.T) {
	f := newBillingFixture(t, nil)
	resp, _ := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "pro-key"}, "")
	if lim := resp.Header.Get("X-Ratelimit-Limit"); resp.StatusCode != 200 || lim != "11500" {
		t.Fatalf("%d limit %s, want 11,000 free + 500 configured", resp.StatusCode, lim)
	}
	f.adminCall(t, "DELETE", "/admin/v1/orgs/pro/addon", adminTok, "")
	resp, _ = do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "pro-key"}, "")
	if lim := resp.Header.Get("X-Ratelimit-Limit"); lim != "11000" {
		t.Fatalf("after DELETE: limit %s, want 11000 (switched off wins over the configured add-on)", lim)
	}
}

// TestRefundUnmeters: a call the gateway could not deliver is refunded and not billed.
func TestRefundUnmeters(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	f := newBillingFixture(t, func(c *Config) { c.Upstream, _ = url.Parse(dead) })
	f.adminCall(t, "PUT", "/admin/v1/orgs/tiny/addon", adminTok, `{"limit":100}`)
	resp, body := do(t, "POST", f.url+"/crm/bulk/v2/read", map[string]string{"X-Api-Key": "tiny-key"}, "")
	if resp.StatusCode != 502 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	_, body = f.adminCall(t, "GET", "/admin/v1/orgs/tiny/billing?from=2026-01-01&to=2026-01-01", viewerTok, "")
	if !strings.Contains(body, `"total_addon_credits":0,`) {
		t.Fatalf("a refunded call was billed: %s", body)
	}
}

func TestQuote(t *testing.T) {
	f := newBillingFixture(t, nil)
	tests := []struct {
		query      string
		wantStatus int
		wantBody   string
	}{
		// The reference: 100,000 add-on credits cost $8 a day, $240 a month.
		{"addon_credits=100000", 200, `"addon_credits":100000,"daily_amount_micros":8000000,"monthly_amount_micros":240000000,"slabs":[` +
			`{"credits":25000,"price_per_1000_micros":140000,"amount_micros":3500000},{"credits":75000,"price_per_1000_micros":60000,"amount_micros":4500000},` +
			`{"credits":0,"price_per_1000_micros":50000,"amount_micros":0},{"credits":0,"price_per_1000_micros":25000,"amount_micros":0}]`},
		// The reference: 75,000 credits, $3.50 + $3 = $6.50 a day.
		{"addon_credits=75000", 200, `"daily_amount_micros":6500000,"monthly_amount_micros":195000000`},
		{"addon_credits=0", 200, `"daily_amount_micros":0`},
		{"addon_credits=-1", 400, `"code":"INVALID_DATA"`},
		{"addon_credits=lots", 400, `"code":"INVALID_DATA"`},
		{"addon_credits=9007199254740991", 400, `too large to quote`}, // 30 days of it pass what an amount holds
		{"", 400, `"code":"INVALID_DATA"`},
	}
	for _, tt := range tests {
		s, body := f.adminCall(t, "GET", "/admin/v1/quote?"+tt.query, viewerTok, "")
		if s != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
			t.Errorf("quote?%s: %d %s; want %d containing %s", tt.query, s, body, tt.wantStatus, tt.wantBody)
		}
	}
}

func TestBillingReportParams(t *testing.T) {
	f := newBillingFixture(t, nil)
	tests := []struct {
		query      string
		wantStatus int
		wantBody   string
	}{
		{"", 200, `"from":"2025-12-03","to":"2026-01-01"`}, // the last 30 days
		{"from=2026-01-02&to=2026-01-01", 400, `from must not be after to`},
		{"from=2026-13-01", 400, `from must be a date`},
		{"to=yesterday", 400, `to must be a date`},
		{"from=2025-01-01&to=2026-01-01", 400, `at most 100 days`},
		{"from=2025-09-24&to=2026-01-01", 200, `"from":"2025-09-24"`}, // 100 days
		{"from=2025-09-23&to=2025-10-01", 400, `from must be 2025-09-24 or later`},
		{"format=pdf", 400, `format must be json or csv`},
	}
	for _, tt := range tests {
		s, body := f.adminCall(t, "GET", "/admin/v1/orgs/tiny/billing?"+tt.query, viewerTok, "")
		if s != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
			t.Errorf("billing?%s: %d %s; want %d containing %s", tt.query, s, body, tt.wantStatus, tt.wantBody)
		}
	}
	if s, body := f.adminCall(t, "GET", "/admin/v1/orgs/nobody/billing", viewerTok, ""); s != 404 {
		t.Errorf("unknown org: %d %s", s, body)
	}
}

// TestMonthlyPlan: a monthly plan's calls, then its additional calls (priced per call), then
// its own 429 until the next period; admins raise the additional calls up to twice the monthly
// limit; the billing report lists the additional calls per day.
func TestMonthlyPlan(t *testing.T) {
	f := newBillingFixture(t, func(c *Config) {
		list, err := orgs.Parse("mon:edition=monthly,monthly_limit=3,additional=1,commercial=false,keys=mon-key")
		if err != nil {
			t.Fatal(err)
		}
		c.Orgs, _ = orgs.NewDirectory(list)
		inner := c.AddonPlanOf
		c.AddonPlanOf = func(o *orgs.Org) plans.Addon {
			if o.ID == "mon" {
				return plans.Addon{Edition: "monthly", Monthly: 3, Addon: 1, Cap: 6, AnchorDay: 1, CallPrice: 20_000}
			}
			return inner(o)
		}
	})
	key := map[string]string{"X-Api-Key": "mon-key"}
	for i := range 4 {
		if resp, body := do(t, "GET", f.url+"/crm/v2/users", key, ""); resp.StatusCode != 200 {
			t.Fatalf("call %d: %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := do(t, "GET", f.url+"/crm/v2/users", key, "")
	want := `{"code":"TOO_MANY_REQUESTS","details":{"additional_calls":1,"monthly_limit":3,"period_end":"2026-02-01T00:00:00Z"},` +
		`"message":"The monthly call limit and the additional calls of this subscription period are used up; calls resume when the next period starts.","status":"error"}`
	if resp.StatusCode != 429 || strings.TrimSpace(body) != want || resp.Header.Get("Retry-After") != "2678400" || f.up.count() != 4 {
		t.Fatalf("5th call: %d Retry-After %s %s (upstream saw %d calls)", resp.StatusCode, resp.Header.Get("Retry-After"), body, f.up.count())
	}
	// Rate-limit fields on the refusal too: the period's policy beside the credit window's.
	for name, want := range map[string]string{
		"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "2678400", "X-Credits-Charged": "0",
		"Ratelimit": `"monthly";r=0;t=2678400`,
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("5th call: %s = %q, want %q", name, got, want)
		}
	}
	if got := resp.Header.Get("Ratelimit-Policy"); !strings.HasSuffix(got, `, "monthly";q=4;w=2678400`) || resp.Header.Get("X-Ratelimit-Limit") == "" {
		t.Errorf("5th call: Ratelimit-Policy %q, X-Ratelimit-Limit %q", got, resp.Header.Get("X-Ratelimit-Limit"))
	}
	if s, body := f.adminCall(t, "PUT", "/admin/v1/orgs/mon/addon", viewerTok, `{"limit":3}`); s != 403 {
		t.Fatalf("viewer: %d %s", s, body)
	}
	if s, body := f.adminCall(t, "PUT", "/admin/v1/orgs/mon/addon", adminTok, `{"limit":7}`); s != 422 || !strings.Contains(body, `"cap":6`) {
		t.Fatalf("over twice the monthly limit: %d %s", s, body)
	}
	s, body := f.adminCall(t, "PUT", "/admin/v1/orgs/mon/addon", adminTok, `{"limit":3}`)
	if s != 200 || !strings.Contains(body, `"monthly_limit":3,"additional_calls":3,"additional_cap":6,"period_used":4,`+
		`"period_start":"2026-01-01T00:00:00Z","period_end":"2026-02-01T00:00:00Z"`) {
		t.Fatalf("PUT additional calls: %d %s", s, body)
	}
	for i := range 2 {
		if resp, body := do(t, "GET", f.url+"/crm/v2/users", key, ""); resp.StatusCode != 200 {
			t.Fatalf("additional call %d after the raise: %d %s", i+1, resp.StatusCode, body)
		}
	}
	if resp, _ := do(t, "GET", f.url+"/crm/v2/users", key, ""); resp.StatusCode != 429 {
		t.Fatalf("past the raised additional calls: %d", resp.StatusCode)
	}
	s, body = f.adminCall(t, "GET", "/admin/v1/orgs/mon/billing?from=2026-01-01&to=2026-01-01", viewerTok, "")
	wantReport := `{"org":"mon","from":"2026-01-01","to":"2026-01-01","currency":"USD","days":[` +
		`{"date":"2026-01-01","additional_calls":3,"price_per_call_micros":20000,"amount_micros":60000}],` +
		`"total_additional_calls":3,"total_amount_micros":60000}`
	if s != 200 || strings.TrimSpace(body) != wantReport {
		t.Fatalf("report: %d %s\nwant %s", s, body, wantReport)
	}
	s, body = f.adminCall(t, "GET", "/admin/v1/orgs/mon/billing?from=2026-01-01&to=2026-01-01&format=csv", viewerTok, "")
	if wantCSV := "date,additional_calls,price_per_call_micros,amount_micros\n2026-01-01,3,20000,60000\ntotal,3,,60000\n"; s != 200 || body != wantCSV {
		t.Fatalf("CSV: %d %q", s, body)
	}
	// Next period: the count starts again; nothing rolls over.
	f.now.Store(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	if resp, body := do(t, "GET", f.url+"/crm/v2/users", key, ""); resp.StatusCode != 200 {
		t.Fatalf("next period: %d %s", resp.StatusCode, body)
	}
}

// TestMonthlyCallGivenBackWhenNotServed: a monthly plan's call that the gateway could not
// deliver (502) is not counted against the period, and not billed.
func TestMonthlyCallGivenBackWhenNotServed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	f := newBillingFixture(t, func(c *Config) {
		c.Upstream, _ = url.Parse(dead)
		list, _ := orgs.Parse("mon:edition=monthly,monthly_limit=1,keys=mon-key")
		c.Orgs, _ = orgs.NewDirectory(list)
		c.AddonPlanOf = func(o *orgs.Org) plans.Addon {
			return plans.Addon{Edition: "monthly", Monthly: 1, Addon: 1, Cap: 2, AnchorDay: 1, CallPrice: 60_000}
		}
	})
	for range 3 {
		if resp, body := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "mon-key"}, ""); resp.StatusCode != 502 {
			t.Fatalf("%d %s, want 502", resp.StatusCode, body)
		}
	}
	_, body := f.adminCall(t, "PUT", "/admin/v1/orgs/mon/addon", adminTok, `{"limit":1}`)
	if !strings.Contains(body, `"period_used":0`) {
		t.Fatalf("calls never served were counted: %s", body)
	}
	_, body = f.adminCall(t, "GET", "/admin/v1/orgs/mon/billing?from=2026-01-01&to=2026-01-01", viewerTok, "")
	if !strings.Contains(body, `"total_additional_calls":0,`) {
		t.Fatalf("calls never served were billed: %s", body)
	}
}

// periodDownStore is a store whose monthly-plan counting is unreachable, like a dead Redis;
// it counts the calls that reached it.
type periodDownStore struct {
	brokenStore
	calls *atomic.Int64
}

func (s periodDownStore) SpendCall(context.Context, limiter.PeriodKey, time.Time, bool) (limiter.PeriodDecision, error) {
	s.calls.Add(1)
	return limiter.PeriodDecision{}, errors.New("dial tcp 127.0.0.1:1: connection refused")
}

func (s periodDownStore) RefundCall(context.Context, limiter.PeriodKey, limiter.PeriodDecision) error {
	return nil
}

// TestMonthlyPlanBreaker: a monthly plan's calls go through the breaker too. After
// BreakerFailures failures in a row the store is no longer asked (no timeout waited out on
// every call), and the fail mode answers.
func TestMonthlyPlanBreaker(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		var calls atomic.Int64
		f := newBillingFixture(t, func(c *Config) {
			c.Store, c.StoreLacks = periodDownStore{calls: &calls}, lacksAll&^StorePeriods
			c.FailOpen = failOpen
			c.BreakerFailures = 3
			c.BreakerCooldown = time.Hour // no probe during the test
			list, _ := orgs.Parse("mon:edition=monthly,monthly_limit=100,keys=mon-key")
			c.Orgs, _ = orgs.NewDirectory(list)
			c.AddonPlanOf = func(o *orgs.Org) plans.Addon {
				return plans.Addon{Edition: "monthly", Monthly: 100, Cap: 200, AnchorDay: 1, CallPrice: 60_000}
			}
		})
		want := 503
		if failOpen {
			want = 200
		}
		for i := range 10 {
			resp, body := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "mon-key"}, "")
			if resp.StatusCode != want {
				t.Fatalf("fail open %v, call %d: %d %s, want %d", failOpen, i+1, resp.StatusCode, body, want)
			}
			if resp.Header.Get("X-Ratelimit-Limit") == "" || resp.Header.Get("Ratelimit-Policy") == "" {
				t.Errorf("fail open %v, call %d: no policy fields: %v", failOpen, i+1, resp.Header)
			}
		}
		// Three failures in a row open it; under fail open the credit debit of a call that
		// passed uncounted fails too, and counts.
		if got := calls.Load(); got < 2 || got > 3 {
			t.Errorf("fail open %v: the store was asked %d times for 10 calls, want 2 or 3 (then the breaker opens)", failOpen, got)
		}
		if !f.gw.BreakerOpen() {
			t.Errorf("fail open %v: breaker closed after the store failed 10 times", failOpen)
		}
	}
}

// TestMonthlyPlanShadow: in shadow mode a monthly plan's calls past the period's quota are
// forwarded, and counted as rejections by monthly_quota; each call counts once in requests.
func TestMonthlyPlanShadow(t *testing.T) {
	m := NewMetrics(MetricsOptions{MaxOrgs: 10})
	f := newBillingFixture(t, func(c *Config) {
		c.Shadow = true
		c.Metrics = m
		list, _ := orgs.Parse("mon:edition=monthly,monthly_limit=1,keys=mon-key")
		c.Orgs, _ = orgs.NewDirectory(list)
		c.AddonPlanOf = func(o *orgs.Org) plans.Addon {
			return plans.Addon{Edition: "monthly", Monthly: 1, Cap: 2, AnchorDay: 1, CallPrice: 60_000}
		}
	})
	for i := range 3 {
		if resp, body := do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "mon-key"}, ""); resp.StatusCode != 200 {
			t.Fatalf("call %d in shadow mode: %d %s", i+1, resp.StatusCode, body)
		}
	}
	admin := httptest.NewServer(NewAdminHandler(AdminConfig{Gateway: f.gw, Metrics: m}))
	defer admin.Close()
	fams := metricstest.Scrape(t, admin.URL+"/metrics")
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"creditgate_rejections_total", []string{"org", "mon", "edition", "monthly", "reason", "monthly_quota"}, 2},
		{"creditgate_requests_total", []string{"org", "mon", "edition", "monthly", "outcome", "allowed"}, 3},
	} {
		if got, ok := fams.Value(tt.name, tt.labels...); !ok || got != tt.want {
			t.Errorf("%s%v = %v (present %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
}
