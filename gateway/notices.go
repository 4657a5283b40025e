package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// Usage notices: the store queues an event when a debit makes an org's usage reach one of
// its thresholds (package limiter decides, inside the debit); every gateway delivers the
// events of any org, as signed webhooks (Standard Webhooks), at least once, retrying with
// backoff. An org's events go one at a time, oldest first, by one gateway at a time (the
// store's claim on the org's outbox, for a lease).

// NoticeConfig configures the delivery of usage notices. Zero values are documented per
// field.
type NoticeConfig struct {
	// Thresholds are the percents of an org's limit that queue a notice, for orgs that set
	// none of their own (orgs.Org.NotifyThresholds); nil: none.
	Thresholds []int64
	// URL and Secret are the webhook endpoint and its signing secret (whsec_ and base64, see
	// ParseWebhookSecret) for orgs without their own; empty: such orgs' events are dropped.
	URL, Secret string
	// Timeout bounds one delivery attempt, the response included (zero: 5s).
	Timeout time.Duration
	// MaxAttempts is how many attempts an event gets before it is dropped (zero: 10).
	MaxAttempts int
	// Backoff is the wait after the first failed attempt, doubled after each next one up to
	// MaxBackoff (zero: 1s and 5m).
	Backoff, MaxBackoff time.Duration
	// Interval is how often the gateway looks for events due (zero: 1s), and SweepInterval
	// how often it looks for outboxes its peers left unindexed (zero: 30s).
	Interval, SweepInterval time.Duration
	// MaxOrgs bounds the orgs whose events one gateway delivers at once (zero: 32), PerOrg
	// the events of one org per claim (zero: 8).
	MaxOrgs, PerOrg int
	// Transport sends the webhooks (nil: a transport of the gateway's own).
	Transport http.RoundTripper
}

// webhookSecretPrefix starts a Standard Webhooks signing secret.
const webhookSecretPrefix = "whsec_"

// ParseWebhookSecret returns the key of a Standard Webhooks secret: "whsec_" and the key in
// base64, 24 to 64 bytes.
func ParseWebhookSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, webhookSecretPrefix)
	if !ok {
		return nil, errors.New(`a webhook secret starts with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New(`a webhook secret is "whsec_" and base64; the rest is not base64`)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("a webhook secret's key is 24 to 64 bytes, got %d", len(key))
	}
	return key, nil
}

// CheckWebhookURL reports whether raw is a webhook endpoint: an absolute http:// or https://
// URL with a host. The error never quotes the URL (it may carry a token).
func CheckWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must be an http:// or https:// URL")
	case u.Host == "":
		return errors.New("has no host")
	}
	return nil
}

// Event types of a notice's body.
const (
	noticeCrossed   = "credits.threshold_crossed"
	noticeExhausted = "credits.exhausted" // at 100 %
)

// noticeBody is the webhook body of a notice.
type noticeBody struct {
	Type          string `json:"type"`
	Org           string `json:"org"`
	Threshold     int64  `json:"threshold_percent"`
	Used          int64  `json:"used"`
	Limit         int64  `json:"limit"`
	WindowSeconds int64  `json:"window_seconds"`
	At            string `json:"at"`
}

func noticeJSON(n limiter.Notice) []byte {
	typ := noticeCrossed
	if n.Threshold >= 100 {
		typ = noticeExhausted
	}
	b, _ := json.Marshal(noticeBody{Type: typ, Org: n.Org, Threshold: n.Threshold, Used: n.Used, Limit: n.Limit,
		WindowSeconds: int64(n.Window / time.Second), At: n.At.UTC().Format("2006-01-02T15:04:05.000Z")})
	return b
}

// signWebhook returns the webhook-signature value of Standard Webhooks: "v1," and the base64
// HMAC-SHA256 under key of "id.timestamp.body".
func signWebhook(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// maxWebhookResponse bounds what is read of a receiver's answer: its body means nothing.
const maxWebhookResponse = 64 << 10

// notifier delivers the notices of the store's outboxes.
type notifier struct {
	g      *Gateway
	cfg    NoticeConfig
	owner  string // this gateway, in the store's claims
	client *http.Client
	log    *zap.Logger
	queue  chan string // orgs whose debit queued events, to index
	slots  chan struct{}
	wg     sync.WaitGroup
}

// newNotifier returns the notifier of g, or nil when the store has no notices.
func newNotifier(g *Gateway, cfg NoticeConfig) *notifier {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 30 * time.Second
	}
	if cfg.MaxOrgs <= 0 {
		cfg.MaxOrgs = 32
	}
	if cfg.PerOrg <= 0 {
		cfg.PerOrg = 8
	}
	tr := cfg.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 4
		t.ResponseHeaderTimeout = cfg.Timeout
		tr = t
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	return &notifier{
		g:     g,
		cfg:   cfg,
		owner: "gw-" + hex.EncodeToString(id[:]),
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is not a delivery
		}},
		log:   g.log.Named("notices"),
		queue: make(chan string, 1024),
		slots: make(chan struct{}, cfg.MaxOrgs),
	}
}

// lease is how long a claim on an org's outbox lasts: its batch of attempts, with room.
func (n *notifier) lease() time.Duration {
	return time.Duration(n.cfg.PerOrg+1)*n.cfg.Timeout + 2*n.g.cfg.StoreTimeout
}

// queued notes that a debit of org queued count events: the org is indexed in the
// background (a full queue is left to the sweep).
func (n *notifier) queued(org string, count int64) {
	n.g.metrics.notices[noticeQueued].Add(float64(count))
	select {
	case n.queue <- org:
	default:
	}
}

// run delivers until the gateway closes.
func (n *notifier) run() {
	tick := time.NewTicker(n.cfg.Interval)
	defer tick.Stop()
	sweep := time.NewTicker(n.cfg.SweepInterval)
	defer sweep.Stop()
	n.storeCall(func(ctx context.Context) error { return n.g.cfg.Store.SweepNotices(ctx, time.Now()) })
	for {
		select {
		case <-n.g.stop:
			n.wg.Wait()
			return
		case org := <-n.queue:
			n.storeCall(func(ctx context.Context) error { return n.g.cfg.Store.QueueNotices(ctx, org, time.Now()) })
		case <-sweep.C:
			n.storeCall(func(ctx context.Context) error { return n.g.cfg.Store.SweepNotices(ctx, time.Now()) })
		case <-tick.C:
			n.claim()
		}
	}
}

// storeCall runs f within the store timeout; a failure is logged (the work is found again:
// by the next tick, or the sweep).
func (n *notifier) storeCall(f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.g.cfg.StoreTimeout)
	defer cancel()
	if err := f(ctx); err != nil {
		n.log.Warn("notice store call failed", zap.Error(err))
	}
}

// claim takes as many orgs with events due as there are free delivery slots, and delivers
// each org's in the background.
func (n *notifier) claim() {
	free := cap(n.slots) - len(n.slots)
	if free == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.g.cfg.StoreTimeout)
	events, err := n.g.cfg.Store.ClaimNotices(ctx, n.owner, time.Now(), n.lease(), free, n.cfg.PerOrg)
	cancel()
	if err != nil {
		n.log.Warn("notices not claimed", zap.Error(err))
	}
	for len(events) > 0 {
		org := events[0].Org
		i := 1
		for i < len(events) && events[i].Org == org {
			i++
		}
		batch := events[:i:i]
		events = events[i:]
		n.slots <- struct{}{}
		n.wg.Add(1)
		go func() {
			defer func() { <-n.slots; n.wg.Done() }()
			n.deliver(org, batch)
		}()
	}
}

// endpoint is where an org's notices go.
type endpoint struct {
	url string
	key []byte
}

// endpointOf returns org's endpoint: set through the admin API, else the org's own, else the
// default; a url of "" when none is known or its secret is not usable; an error when the
// admin API's settings could not be read.
func (n *notifier) endpointOf(ctx context.Context, org string) (endpoint, error) {
	u, secret := n.cfg.URL, n.cfg.Secret
	if t, ok := n.g.orgByID(org); ok && t.org.WebhookURL != "" {
		u, secret = t.org.WebhookURL, t.org.WebhookSecret
	}
	st, err := n.g.cfg.Store.Notices(ctx, org)
	if err != nil {
		// Settings set through the admin API may name another endpoint: none is guessed.
		return endpoint{}, err
	}
	if st.Settings.URL != nil {
		u = *st.Settings.URL
	}
	if st.Settings.Secret != nil {
		secret = *st.Settings.Secret
	}
	key, err := ParseWebhookSecret(secret)
	if u == "" || err != nil {
		return endpoint{}, nil
	}
	return endpoint{url: u, key: key}, nil
}

// deliver sends org's events (its oldest, claimed) in order, and settles the claim: the
// delivered and the dropped leave the outbox; at the first failure the rest wait for the
// backoff.
func (n *notifier) deliver(org string, events []limiter.Notice) {
	ctx, cancel := context.WithTimeout(context.Background(), n.g.cfg.StoreTimeout)
	ep, err := n.endpointOf(ctx, org)
	cancel()
	if err != nil {
		// The org's settings could not be read: its events stay claimed until the claim
		// lapses, then another attempt (here or elsewhere) reads them again.
		n.log.Warn("notice settings not read: delivery waits", zap.String("org", org), zap.Error(err))
		return
	}
	var (
		done    []limiter.Notice
		failed  *limiter.Notice
		retryAt time.Time
	)
	for i := range events {
		e := events[i]
		if ep.url == "" {
			n.g.metrics.notices[noticeDropped].Inc()
			n.log.Warn("notice dropped: the org has no webhook endpoint (or no usable secret)", zap.String("org", org), zap.String("id", e.ID))
			done = append(done, e)
			continue
		}
		err := n.post(ep, e)
		if err == nil {
			n.g.metrics.notices[noticeDelivered].Inc()
			done = append(done, e)
			continue
		}
		if e.Attempts+1 >= int64(n.cfg.MaxAttempts) {
			n.g.metrics.notices[noticeDropped].Inc()
			n.log.Warn("notice dropped after its last attempt", zap.String("org", org), zap.String("id", e.ID),
				zap.Int64("attempts", e.Attempts+1), zap.Error(err))
			done = append(done, e)
			continue
		}
		n.g.metrics.notices[noticeRetried].Inc()
		n.log.Info("notice not delivered, retried later", zap.String("org", org), zap.String("id", e.ID),
			zap.Int64("attempt", e.Attempts+1), zap.Error(err))
		failed, retryAt = &e, time.Now().Add(n.backoff(e.Attempts))
		break
	}
	ctx, cancel = context.WithTimeout(context.Background(), n.g.cfg.StoreTimeout)
	defer cancel()
	if err := n.g.cfg.Store.FinishNotices(ctx, n.owner, org, done, failed, retryAt, time.Now()); err != nil {
		// The delivered ones are sent again when the claim ends: at least once, same ids.
		n.log.Warn("notices not settled", zap.String("org", org), zap.Error(err))
	}
}

// backoff is the wait after the attempts+1st failed attempt.
func (n *notifier) backoff(attempts int64) time.Duration {
	d := n.cfg.Backoff
	for range min(attempts, 30) {
		d *= 2
		if d >= n.cfg.MaxBackoff {
			return n.cfg.MaxBackoff
		}
	}
	return d
}

// errWebhookStatus is a receiver's answer other than 2xx.
type errWebhookStatus int

func (e errWebhookStatus) Error() string { return "receiver answered " + strconv.Itoa(int(e)) }

// post makes one attempt to deliver e: signed, bounded by the timeout, the answer read up to
// maxWebhookResponse bytes. Only a 2xx answer is a delivery.
func (n *notifier) post(ep endpoint, e limiter.Notice) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeout)
	defer cancel()
	body := noticeJSON(e)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "creditgate")
	h.Set("Webhook-Id", e.ID)
	h.Set("Webhook-Timestamp", ts)
	h.Set("Webhook-Signature", signWebhook(ep.key, e.ID, ts, body))
	resp, err := n.client.Do(req)
	if err != nil {
		return errors.New("receiver not reached: " + redactURLError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookResponse))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errWebhookStatus(resp.StatusCode)
	}
	return nil
}

// redactURLError drops the URL from a client error: it may carry a token.
func redactURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// thresholdsOf returns org o's configured thresholds: its own, else the default.
func (n *notifier) thresholdsOf(o *orgs.Org) []int64 {
	if o.HasNotify {
		return o.NotifyThresholds
	}
	return n.cfg.Thresholds
}
