package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/creditgate/creditgate/limiter"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // the Standard Webhooks test vector's

// attempt is one request a receiver got.
type attempt struct {
	id, timestamp, signature string
	body                     []byte
}

// receiver is a webhook endpoint that checks every signature, and answers each attempt of an
// event as answer says (by the event's id and attempt number, from 1).
type receiver struct {
	*httptest.Server
	t        *testing.T
	key      []byte
	answer   func(w http.ResponseWriter, r *http.Request, n int)
	mu       sync.Mutex
	attempts []attempt
	byID     map[string]int
	inFlight atomic.Int64
	peak     atomic.Int64
}

func newReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) *receiver {
	key, err := ParseWebhookSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, key: key, answer: answer, byID: map[string]int{}}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := rc.inFlight.Add(1)
		defer rc.inFlight.Add(-1)
		for p := rc.peak.Load(); n > p && !rc.peak.CompareAndSwap(p, n); p = rc.peak.Load() {
		}
		body, _ := io.ReadAll(r.Body)
		a := attempt{id: r.Header.Get("Webhook-Id"), timestamp: r.Header.Get("Webhook-Timestamp"), signature: r.Header.Get("Webhook-Signature"), body: body}
		mac := hmac.New(sha256.New, rc.key)
		mac.Write([]byte(a.id + "." + a.timestamp + "." + string(body)))
		if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(a.signature), []byte(want)) {
			t.Errorf("event %s: signature %q, want %q", a.id, a.signature, want)
		}
		rc.mu.Lock()
		rc.attempts = append(rc.attempts, a)
		rc.byID[a.id]++
		k := rc.byID[a.id]
		rc.mu.Unlock()
		rc.answer(w, r, k)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) snapshot() ([]attempt, map[string]int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	ids := map[string]int{}
	for k, v := range rc.byID {
		ids[k] = v
	}
	return append([]attempt(nil), rc.attempts...), ids
}

func noticeFixture(t *testing.T, rc *receiver, mod func(*NoticeConfig)) *billingFixture {
	nc := &NoticeConfig{Thresholds: []int64{50, 100}, URL: rc.URL, Secret: testSecret, Timeout: 300 * time.Millisecond,
		Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Interval: 20 * time.Millisecond}
	if mod != nil {
		mod(nc)
	}
	return newBillingFixture(t, func(c *Config) { c.Notices = nc })
}

// TestNoticesDeliveredAfterFailures: each event's first attempt gets a 500, its second no
// answer within the timeout; the third delivers it, with the same id and body each time and
// a valid signature on every attempt.
func TestNoticesDeliveredAfterFailures(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2:
			<-r.Context().Done() // the gateway gives up first
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	f := noticeFixture(t, rc, nil)
	key := map[string]string{"X-Api-Key": "tiny-key"}
	for range 10 { // tiny: 10 credits; 5 cross 50 %, 10 exhaust them
		if resp, body := do(t, "GET", f.url+"/crm/v2/users", key, ""); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	waitUntil(t, func() bool {
		_, ids := rc.snapshot()
		for _, n := range ids {
			if n < 3 {
				return false
			}
		}
		return len(ids) == 2
	})
	attempts, ids := rc.snapshot()
	bodies := map[string]string{}
	var types []string
	for _, a := range attempts {
		if b, ok := bodies[a.id]; ok && b != string(a.body) {
			t.Errorf("event %s sent with two bodies:\n%s\n%s", a.id, b, a.body)
		}
		if _, ok := bodies[a.id]; !ok {
			var nb noticeBody
			if err := json.Unmarshal(a.body, &nb); err != nil {
				t.Fatal(err)
			}
			types = append(types, nb.Type)
			if nb.Org != "tiny" || nb.Limit != 10 || nb.WindowSeconds != 86400 || nb.Used != nb.Threshold/10 {
				t.Errorf("body %s", a.body)
			}
		}
		bodies[a.id] = string(a.body)
	}
	if strings.Join(types, ",") != noticeCrossed+","+noticeExhausted {
		t.Errorf("types %v", types)
	}
	for id, n := range ids {
		if n != 3 {
			t.Errorf("event %s: %d attempts, want 3", id, n)
		}
	}
	m := f.gw.metrics
	// The receiver has the last attempts; the gateway counts them delivered once it has read
	// their answers.
	waitUntil(t, func() bool { return testutil.ToFloat64(m.notices[noticeDelivered]) == 2 })
	if q, d, r := testutil.ToFloat64(m.notices[noticeQueued]), testutil.ToFloat64(m.notices[noticeDelivered]), testutil.ToFloat64(m.notices[noticeRetried]); q != 2 || d != 2 || r != 4 {
		t.Errorf("queued %v, delivered %v, retried %v; want 2, 2, 4", q, d, r)
	}
}

// TestNoticeReceiverMisbehaves: a receiver that answers 2xx with an endless body delivers
// (the gateway reads a bounded part); one that always fails has the event dropped after the
// last attempt, counted, and the outbox emptied.
func TestNoticeReceiverMisbehaves(t *testing.T) {
	t.Run("endless answer", func(t *testing.T) {
		rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
			w.WriteHeader(http.StatusOK)
			chunk := []byte(strings.Repeat("x", 32<<10))
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})
		f := noticeFixture(t, rc, func(c *NoticeConfig) { c.Timeout = 5 * time.Second })
		for range 5 {
			do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "tiny-key"}, "")
		}
		waitUntil(t, func() bool { return testutil.ToFloat64(f.gw.metrics.notices[noticeDelivered]) == 1 })
		if _, ids := rc.snapshot(); len(ids) != 1 {
			t.Fatalf("attempts %v, want one", ids)
		}
	})
	t.Run("always failing", func(t *testing.T) {
		rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusBadGateway) })
		f := noticeFixture(t, rc, func(c *NoticeConfig) { c.MaxAttempts = 3 })
		for range 5 {
			do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "tiny-key"}, "")
		}
		waitUntil(t, func() bool { return testutil.ToFloat64(f.gw.metrics.notices[noticeDropped]) == 1 })
		time.Sleep(200 * time.Millisecond) // ten intervals: nothing more is tried
		if attempts, ids := rc.snapshot(); len(ids) != 1 || len(attempts) != 3 {
			t.Fatalf("attempts %v, want 3 of one event", ids)
		}
	})
}

// TestNoticesManyOrgsBounded: with a receiver that hangs, many orgs crossing at once occupy
// at most MaxOrgs deliveries of a gateway at a time.
func TestNoticesManyOrgsBounded(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	f := noticeFixture(t, rc, func(c *NoticeConfig) { c.MaxOrgs, c.Timeout = 2, 2*time.Second })
	// Each org crosses 1 % of its limit: tiny 1 of 10 credits, acme 50 of 1,000, pro 150 of
	// 11,500.
	calls := map[string][]string{"tiny": {"/crm/v2/users"}, "acme": {"/crm/bulk/v2/read"},
		"pro": {"/crm/bulk/v2/read", "/crm/bulk/v2/read", "/crm/bulk/v2/read"}}
	for org, paths := range calls {
		if s, body := f.adminCall(t, "PUT", "/admin/v1/orgs/"+org+"/notices", adminTok, `{"thresholds":[1]}`); s != 200 {
			t.Fatalf("PUT %s: %d %s", org, s, body)
		}
		for _, p := range paths {
			method := "GET"
			if strings.Contains(p, "bulk") {
				method = "POST"
			}
			if resp, body := do(t, method, f.url+p, map[string]string{"X-Api-Key": org + "-key"}, ""); resp.StatusCode != 200 {
				t.Fatalf("%s %s: %d %s", org, p, resp.StatusCode, body)
			}
		}
	}
	waitUntil(t, func() bool { return rc.inFlight.Load() == 2 })
	time.Sleep(100 * time.Millisecond) // five intervals: no third starts
	if p := rc.peak.Load(); p != 2 {
		t.Fatalf("%d deliveries at once, want at most 2", p)
	}
	close(release)
	waitUntil(t, func() bool { _, ids := rc.snapshot(); return len(ids) >= 3 })
}

// TestNoticesAdminAPI: the settings in force, changed and deleted through the admin API, with
// bad values refused and the secret never shown; the usage shows armed and fired thresholds.
func TestNoticesAdminAPI(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {})
	f := noticeFixture(t, rc, nil)
	get := func() noticesResponse {
		t.Helper()
		s, body := f.adminCall(t, "GET", "/admin/v1/orgs/tiny/notices", viewerTok, "")
		if s != 200 {
			t.Fatalf("GET: %d %s", s, body)
		}
		if strings.Contains(body, testSecret) || strings.Contains(body, "whsec_") {
			t.Fatalf("the secret is shown: %s", body)
		}
		var r noticesResponse
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := get(); r.ThresholdsFrom != "default" || r.WebhookFrom != "default" || !r.WebhookSecretSet || len(r.Armed) != 2 {
		t.Fatalf("defaults: %+v", r)
	}
	for range 6 {
		do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "tiny-key"}, "")
	}
	if r := get(); len(r.Fired) != 1 || r.Fired[0] != 50 || len(r.Armed) != 1 || r.Armed[0] != 100 {
		t.Fatalf("after 6 of 10: %+v", r)
	}
	resp, body := do(t, "GET", f.url+"/creditgate/v1/usage", map[string]string{"X-Api-Key": "tiny-key"}, "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"notices":{"thresholds":[50,100],"armed":[100],"fired":[50]}`) {
		t.Fatalf("usage: %d %s", resp.StatusCode, body)
	}
	tests := []struct {
		token, give string
		want        int
	}{
		{viewerTok, `{"thresholds":[80]}`, 403},
		{adminTok, `{"thresholds":[0]}`, 422},
		{adminTok, `{"thresholds":[50,50]}`, 422},
		{adminTok, `{"webhook_url":"https://x.example/h"}`, 422},
		{adminTok, `{"webhook_url":"ftp://x.example/h","webhook_secret":"` + testSecret + `"}`, 422},
		{adminTok, `{"webhook_url":"https://x.example/h","webhook_secret":"whsec_short"}`, 422},
		{adminTok, `{"THRESHOLDS":[80]}`, 400},
		{adminTok, `{"thresholds":[80],"thresholds":[90]}`, 400},
		{adminTok, `{"thresholds":[80]} {}`, 400},
	}
	for _, tt := range tests {
		if s, body := f.adminCall(t, "PUT", "/admin/v1/orgs/tiny/notices", tt.token, tt.give); s != tt.want {
			t.Errorf("PUT %s: %d %s, want %d", tt.give, s, body, tt.want)
		}
	}
	s, body := f.adminCall(t, "PUT", "/admin/v1/orgs/tiny/notices", adminTok,
		`{"thresholds":[90,80],"webhook_url":"https://user:pw@x.example/h?token=t1","webhook_secret":"`+testSecret+`"}`)
	if s != 200 || strings.Contains(body, "t1") || strings.Contains(body, "pw") {
		t.Fatalf("PUT: %d %s", s, body)
	}
	if r := get(); r.ThresholdsFrom != "admin" || r.WebhookURL != "https://x.example/…" || len(r.Thresholds) != 2 || r.Thresholds[0] != 80 || len(r.Fired) != 1 {
		t.Fatalf("after PUT: %+v", r)
	}
	if s, body := f.adminCall(t, "DELETE", "/admin/v1/orgs/tiny/notices", adminTok, ""); s != 200 || !strings.Contains(body, `"thresholds_from":"default"`) {
		t.Fatalf("DELETE: %d %s", s, body)
	}
	if s, _ := f.adminCall(t, "GET", "/admin/v1/orgs/nobody/notices", viewerTok, ""); s != 404 {
		t.Fatalf("unknown org: %d", s)
	}
}

// stallingStore is a memory store whose first settle of notices stalls past the caller's
// deadline, as a Redis that stops answering would.
type stallingStore struct {
	*limiter.MemoryStore
	stalled atomic.Bool
}

func (s *stallingStore) FinishNotices(ctx context.Context, owner, org string, done []limiter.Notice, failed *limiter.Notice, retryAt, now time.Time) error {
	if s.stalled.CompareAndSwap(false, true) {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.MemoryStore.FinishNotices(ctx, owner, org, done, failed, retryAt, now)
}

// TestNoticeStoreStallsAfterDelivery: the store stalls when the gateway settles a delivered
// event; the claim runs out and the event is delivered again, with the same id (at least
// once), then settled.
func TestNoticeStoreStallsAfterDelivery(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {})
	var store *stallingStore
	f := newBillingFixture(t, func(c *Config) {
		store = &stallingStore{MemoryStore: c.Store.(*limiter.MemoryStore)}
		c.Store, c.StoreTimeout = store, 100*time.Millisecond
		c.Notices = &NoticeConfig{Thresholds: []int64{50}, URL: rc.URL, Secret: testSecret, Timeout: 100 * time.Millisecond,
			PerOrg: 1, Interval: 20 * time.Millisecond}
	})
	for range 5 {
		do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "tiny-key"}, "")
	}
	waitUntil(t, func() bool { return testutil.ToFloat64(f.gw.metrics.notices[noticeDelivered]) == 2 })
	time.Sleep(time.Second) // past two claims' leases (400ms): settled, nothing is sent again
	attempts, ids := rc.snapshot()
	if len(attempts) != 2 || len(ids) != 1 || attempts[0].id != attempts[1].id || string(attempts[0].body) != string(attempts[1].body) {
		t.Fatalf("attempts %v: want one event sent twice, same id and body", ids)
	}
}

// TestSignWebhook: the signature of Standard Webhooks' own example, and of the example in
// docs/api.md.
func TestSignWebhook(t *testing.T) {
	key, err := ParseWebhookSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ id, ts, body, want string }{
		{"msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test": 2432232314}`, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
		{"evt_acme_1767225637123-0", "1767225637",
			`{"type":"credits.threshold_crossed","org":"acme","threshold_percent":80,"used":80,"limit":100,"window_seconds":86400,"at":"2026-01-01T00:00:37.123Z"}`,
			"v1,ncU3vlPSzv2tQ65VD7jMLVpBBgRK1QC4WEXkRnIFjVk="},
	}
	for _, tt := range tests {
		if got := signWebhook(key, tt.id, tt.ts, []byte(tt.body)); got != tt.want {
			t.Errorf("sign %s: %s, want %s", tt.id, got, tt.want)
		}
	}
	for _, bad := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!", "whsec_c2hvcnQ="} {
		if _, err := ParseWebhookSecret(bad); err == nil {
			t.Errorf("secret %q accepted", bad)
		}
	}
}

// unreadSettingsStore is a memory store that cannot read notice settings while fail is set.
type unreadSettingsStore struct {
	*limiter.MemoryStore
	fail atomic.Bool
}

func (s *unreadSettingsStore) Notices(ctx context.Context, org string) (limiter.NoticeState, error) {
	if s.fail.Load() {
		return limiter.NoticeState{}, errors.New("store stalled")
	}
	return s.MemoryStore.Notices(ctx, org)
}

// TestNoticeSettingsUnread: while the org's notice settings cannot be read, its events are
// neither dropped nor sent to an endpoint the settings may override; once they can, the
// event is delivered.
func TestNoticeSettingsUnread(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {})
	var store *unreadSettingsStore
	f := newBillingFixture(t, func(c *Config) {
		store = &unreadSettingsStore{MemoryStore: c.Store.(*limiter.MemoryStore)}
		store.fail.Store(true)
		c.Store, c.StoreTimeout = store, 100*time.Millisecond
		c.Notices = &NoticeConfig{Thresholds: []int64{50}, URL: rc.URL, Secret: testSecret, Timeout: 100 * time.Millisecond,
			Interval: 20 * time.Millisecond}
	})
	for range 5 {
		do(t, "GET", f.url+"/crm/v2/users", map[string]string{"X-Api-Key": "tiny-key"}, "")
	}
	time.Sleep(500 * time.Millisecond) // claims and attempts to read the settings
	if d := testutil.ToFloat64(f.gw.metrics.notices[noticeDropped]); d != 0 {
		t.Fatalf("%v events dropped while the settings could not be read", d)
	}
	if attempts, _ := rc.snapshot(); len(attempts) != 0 {
		t.Fatalf("%d attempts while the settings could not be read", len(attempts))
	}
	store.fail.Store(false)
	waitUntil(t, func() bool { return testutil.ToFloat64(f.gw.metrics.notices[noticeDelivered]) == 1 })
}
