package main

// End-to-end test of usage notices: real binaries on one real redis-server, delivering to a
// real receiver that checks every signature.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creditgate/creditgate/internal/redistest"
)

const e2eWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// Receiver modes.
const (
	failTwice = iota // each event: 500, then no answer (the gateway times out), then 204
	hangNew          // a new event's attempts get no answer until the test says
	acceptAll        // 204
)

type hookEvent struct {
	Type      string `json:"type"`
	Org       string `json:"org"`
	Threshold int64  `json:"threshold_percent"`
	Used      int64  `json:"used"`
	Limit     int64  `json:"limit"`
	Window    int64  `json:"window_seconds"`
	At        string `json:"at"`
}

// hookReceiver records every attempt per event id and checks every signature.
type hookReceiver struct {
	*httptest.Server
	mode      atomic.Int32
	mu        sync.Mutex
	attempts  map[string]int
	delivered map[string]hookEvent // answered 2xx
	order     []string             // ids in the order first seen
	badSig    atomic.Int64
	arrived   chan string // a hangNew attempt came in
	release   chan struct{}
}

func newHookReceiver(t *testing.T) *hookReceiver {
	b64, _ := base64.StdEncoding.DecodeString(e2eWebhookSecret[len("whsec_"):])
	rc := &hookReceiver{attempts: map[string]int{}, delivered: map[string]hookEvent{}, arrived: make(chan string, 16), release: make(chan struct{})}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts := r.Header.Get("Webhook-Id"), r.Header.Get("Webhook-Timestamp")
		mac := hmac.New(sha256.New, b64)
		mac.Write([]byte(id + "." + ts + "." + string(body)))
		if r.Header.Get("Webhook-Signature") != "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
			rc.badSig.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
			rc.badSig.Add(1) // a timestamp a receiver would refuse
		}
		var ev hookEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			rc.badSig.Add(1)
		}
		rc.mu.Lock()
		rc.attempts[id]++
		n := rc.attempts[id]
		if n == 1 {
			rc.order = append(rc.order, id)
		}
		rc.mu.Unlock()
		switch rc.mode.Load() {
		case failTwice:
			if n == 1 {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			if n == 2 {
				<-r.Context().Done()
				return
			}
		case hangNew:
			select {
			case rc.arrived <- id:
			default:
			}
			select {
			case <-rc.release:
			case <-r.Context().Done():
			}
			return
		}
		rc.mu.Lock()
		rc.delivered[id] = ev
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *hookReceiver) state() (attempts map[string]int, delivered map[string]hookEvent, order []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	attempts, delivered = map[string]int{}, map[string]hookEvent{}
	for k, v := range rc.attempts {
		attempts[k] = v
	}
	for k, v := range rc.delivered {
		delivered[k] = v
	}
	return attempts, delivered, append([]string(nil), rc.order...)
}

// TestNoticesAcrossGateways: two gateways race one org (limit 100, thresholds 50, 80, 100)
// to 55, 85 and 100 credits: exactly three events, distinct ids, every signature valid; each
// event's first two attempts fail (500, then a timeout) and it still arrives under its id.
// After the window frees the credits, crossing 50 % again makes a new event; the gateway that
// queued it is SIGKILLed while delivering it, and another gateway delivers it, same id.
func TestNoticesAcrossGateways(t *testing.T) {
	srv := redistest.Start(t)
	up := newCostUpstream(t, 0)
	rc := newHookReceiver(t)
	vars := map[string]string{
		"CREDITGATE_UPSTREAM_URL":         up.URL,
		"CREDITGATE_REDIS_URL":            srv.URL,
		"CREDITGATE_ORGS":                 "acme:limit=100,keys=acme-key",
		"CREDITGATE_WINDOW":               "8s",
		"CREDITGATE_BUCKET":               "1s",
		"CREDITGATE_REDIS_TIMEOUT":        "500ms",
		"CREDITGATE_NOTIFY_THRESHOLDS":    "50,80,100",
		"CREDITGATE_WEBHOOK_URL":          rc.URL + "/hooks",
		"CREDITGATE_WEBHOOK_SECRET":       e2eWebhookSecret,
		"CREDITGATE_WEBHOOK_TIMEOUT":      "1s",
		"CREDITGATE_WEBHOOK_BACKOFF":      "100ms",
		"CREDITGATE_WEBHOOK_MAX_BACKOFF":  "400ms",
		"CREDITGATE_WEBHOOK_MAX_ATTEMPTS": "5",
	}
	a, b := startGateway(t, vars), startGateway(t, vars)
	gws := []*process{a, b}

	// Racing: four clients, each alternating between the gateways, until the window holds
	// 55, then 85, then 100 credits.
	var served atomic.Int64
	drive := func(to int64) {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := &http.Client{Timeout: 10 * time.Second}
				for i := 0; served.Load() < to && i < 200; i++ { // bounded
					if n := served.Add(1); n > to {
						served.Add(-1)
						return
					}
					resp, _ := call(t, client, "GET", gws[(w+i)%2].base+"/crm/v2/users", "acme-key")
					if resp.StatusCode != 200 {
						t.Errorf("call %d: %d", served.Load(), resp.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	for _, to := range []int64{55, 85, 100} {
		drive(to)
	}
	if resp, _ := call(t, http.DefaultClient, "GET", b.base+"/crm/v2/users", "acme-key"); resp.StatusCode != 429 {
		t.Fatalf("call past the limit: %d, want 429", resp.StatusCode)
	}
	waitFor(t, 20*time.Second, func() bool { _, d, _ := rc.state(); return len(d) == 3 })
	attempts, delivered, order := rc.state()
	if len(attempts) != 3 {
		t.Fatalf("events %v, want exactly three", attempts)
	}
	for i, id := range order {
		ev := delivered[id]
		wantType := "credits.threshold_crossed"
		if i == 2 {
			wantType = "credits.exhausted"
		}
		if th := []int64{50, 80, 100}[i]; ev.Threshold != th || ev.Used != th || ev.Limit != 100 || ev.Org != "acme" || ev.Type != wantType || ev.Window != 8 {
			t.Errorf("event %d (%s): %+v, want threshold %d crossed at %d of 100", i, id, ev, th, th)
		}
		if attempts[id] != 3 {
			t.Errorf("event %s: %d attempts, want 3 (500, timeout, delivered)", id, attempts[id])
		}
	}
	if n := rc.badSig.Load(); n != 0 {
		t.Fatalf("%d attempts with a bad signature, timestamp or body", n)
	}
	first := map[string]bool{}
	for _, id := range order {
		first[id] = true
	}

	// The window frees the credits; B goes away, new events hang at the receiver.
	_ = b.cmd.Process.Kill()
	waitFor(t, 20*time.Second, func() bool { return usedCredits(t, a.base, "acme-key") == 0 })
	rc.mode.Store(hangNew)
	for range 55 {
		if resp, _ := call(t, http.DefaultClient, "GET", a.base+"/crm/v2/users", "acme-key"); resp.StatusCode != 200 {
			t.Fatalf("after the window: %d", resp.StatusCode)
		}
	}
	var newID string
	select {
	case newID = <-rc.arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the new event never reached the receiver")
	}
	if first[newID] {
		t.Fatalf("the new crossing came with an old id %s", newID)
	}
	// A is SIGKILLed with the event queued, claimed and not delivered; C delivers it.
	_ = a.cmd.Process.Kill()
	rc.mode.Store(acceptAll)
	close(rc.release)
	startGateway(t, vars)
	waitFor(t, 30*time.Second, func() bool { _, d, _ := rc.state(); _, ok := d[newID]; return ok })
	attempts, delivered, _ = rc.state()
	if len(attempts) != 4 || delivered[newID].Threshold != 50 || delivered[newID].Used != 50 {
		t.Fatalf("after the kill: attempts %v, new event %+v; want one new event, 50 %% at 50", attempts, delivered[newID])
	}
	if n := rc.badSig.Load(); n != 0 {
		t.Fatalf("%d attempts with a bad signature, timestamp or body", n)
	}
}
