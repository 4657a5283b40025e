package gateway

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/orgs"
)

// Metrics holds the Prometheus metrics of a gateway in a private registry, served on the
// admin listener at /metrics. Every label value comes from a set fixed at start-up (or at a
// reload): the org (bounded, see MetricsOptions.MaxOrgs), its edition, the cost table's rule
// names, and the fixed outcome, reason, op and code sets below. The series a request touches
// are resolved when the orgs and the cost table are loaded, so counting a request allocates
// nothing.
type Metrics struct {
	reg     *prometheus.Registry
	maxOrgs int

	requests    *prometheus.CounterVec
	rejections  *prometheus.CounterVec
	debited     *prometheus.CounterVec
	refunded    *prometheus.CounterVec
	addon       *prometheus.CounterVec
	ruleReqs    *prometheus.CounterVec
	ruleCredits *prometheus.CounterVec
	limiterDur  *prometheus.HistogramVec
	upstreamDur *prometheus.HistogramVec
	redisErrors *prometheus.CounterVec
	breakerSt   prometheus.Gauge
	breakerTr   *prometheus.CounterVec
	inFlight    prometheus.Gauge
	bodyHeld    prometheus.Gauge
	bodyPeak    prometheus.Gauge
	bodyLimit   prometheus.Gauge
	bodyRefused *prometheus.CounterVec
	retries     prometheus.Counter

	compensations prometheus.Counter
	localLedger   prometheus.Gauge
	localAdmitted prometheus.Counter
	preflights    *prometheus.CounterVec
	liveGateways  prometheus.Gauge
	deferredLen   prometheus.Gauge
	droppedCalls  *prometheus.CounterVec
	noticesVec    *prometheus.CounterVec
	notices       [numNoticeOutcomes]prometheus.Counter
	settleUnread  [numUnread]prometheus.Counter

	storeOps [numStoreOps][numStoreResults]prometheus.Observer
	storeErr [numStoreOps]prometheus.Counter
	unknown  *orgSeries // calls that named no known org

	mu     sync.Mutex                     // guards labels and series
	labels map[string]string              // org ID → org label value ("other" past MaxOrgs)
	series map[[2]string]*orgSeries       // {org label, edition} → series
	orgs   atomic.Pointer[orgs.Directory] // the configured orgs, for callers outside the request path
	rules  atomic.Pointer[ruleSeriesM]
}

type ruleSeriesM = map[string]*ruleSeries

// MetricsOptions configures NewMetrics.
type MetricsOptions struct {
	// MaxOrgs is how many orgs get a label value of their own (the first ones configured);
	// the others share org="other". Zero puts every org under "other".
	MaxOrgs int
}

// Outcomes of a call (label "outcome"): each call counts once, under one of them.
const (
	outAllowed        = iota // debited and forwarded
	outRejected              // answered 429, nothing debited
	outShadowRejected        // would have been rejected; forwarded uncharged (CREDITGATE_SHADOW)
	outFailOpen              // the store could not decide; forwarded uncharged
	outFailClosed            // the store could not decide; answered 503
	outBadRequest            // the body could not be buffered or was too large; not forwarded
	outUnauthorized          // no known org; answered 401
	outClientClosed          // the client left while the store decided
	outBodyBudget            // the body budget had no room; answered 503, nothing debited
	outNoRoute               // no route matched; answered 404, nothing debited
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"allowed", "rejected", "shadow_rejected", "fail_open", "fail_closed", "bad_request", "unauthorized", "client_closed",
	"body_buffer_full", "no_route",
}

// Rejection reasons (label "reason"). monthly_quota is fed by monthly plans.
const (
	reasonCredits = iota
	reasonConcurrency
	reasonHeavyConcurrency
	reasonCostExceedsLimit
	reasonMonthlyQuota
	reasonBodyTooLarge // shadow mode only: a body to count over CREDITGATE_MAX_BODY_BYTES
	reasonBodyBuffer   // shadow mode only: no room in the body buffer budget
	numReasons
)

var reasonNames = [numReasons]string{"credits", "concurrency", "heavy_concurrency", "cost_exceeds_limit", "monthly_quota", "body_too_large", "body_buffer_full"}

// Store operations and their results (labels "op" and "result" of the limiter histogram).
const (
	opSpend = iota
	opRefund
	opRelease
	opPeriod     // a monthly plan's call counted against its period
	opRenew      // the leases of calls in flight renewed
	opCompensate // a debit whose reply was lost, undone
	opSettle     // a debit corrected to the cost its answer settled on
	numStoreOps
)

var storeOpNames = [numStoreOps]string{"spend", "refund", "release", "period", "renew", "compensate", "settle"}

// Reasons a response to settle on could not be read (label "reason" of
// creditgate_settle_unread_total): the call keeps its reserved cost (or, for client_gone,
// the rule's max when it has one).
const (
	unreadNotJSON    = iota // not one valid JSON document (or no valid event)
	unreadMissing           // nothing of the right type at the path
	unreadNumber            // the number at the path is too long
	unreadTruncated         // the upstream's body broke off
	unreadEncoding          // a content coding the gateway does not decode, or bytes that are not what it says
	unreadHeader            // a header rule's header is absent, repeated or not a whole number
	unreadNoBody            // HEAD, 204 or 304: no body to read
	unreadStatus            // not a 2xx answer: its body is not the result
	unreadClientGone        // the client left and the rest of the body was not read within the bounds
	numUnread
)

var unreadNames = [numUnread]string{"not_json", "missing", "number", "truncated", "encoding", "header", "no_body", "status", "client_gone"}

const (
	resultOK       = iota // the store decided: allowed, or a refund/release done
	resultRejected        // the store decided: rejected
	resultError           // the store could not decide (counted in creditgate_redis_errors_total too)
	numStoreResults
)

var storeResultNames = [numStoreResults]string{"ok", "rejected", "error"}

// What became of usage notices (label "outcome" of creditgate_notices_total).
const (
	noticeQueued    = iota // a debit queued an event (counted by the gateway that debited)
	noticeDelivered        // a receiver answered 2xx
	noticeRetried          // an attempt failed; the event waits for its backoff
	noticeDropped          // given up: out of attempts, or no endpoint
	numNoticeOutcomes
)

var noticeOutcomeNames = [numNoticeOutcomes]string{"queued", "delivered", "retried", "dropped"}

// Upstream status classes (label "code"); "error" is a call the gateway could not complete
// (502/504 answered by the gateway, or the client left).
var codeClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "error"}

const codeError = 5

// orgSeries are the series of one {org, edition} label pair.
type orgSeries struct {
	requests   [numOutcomes]prometheus.Counter
	rejections [numReasons]prometheus.Counter
	debited    prometheus.Counter
	refunded   prometheus.Counter
	addon      prometheus.Counter
}

// ruleSeries are the series of one cost-table rule.
type ruleSeries struct {
	requests [numOutcomes]prometheus.Counter
	credits  prometheus.Counter
	upstream [len(codeClasses)]prometheus.Observer
}

// Histogram buckets. A Redis script answers in well under a millisecond on a healthy
// network, so the limiter's buckets start at 50µs; the upstream's span an API's range.
var (
	limiterBuckets  = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	upstreamBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// NewMetrics returns the metrics of one gateway, registered in a registry of their own
// together with the Go runtime and process collectors.
func NewMetrics(opts MetricsOptions) *Metrics {
	const ns = "creditgate"
	orgLabels := []string{"org", "edition"}
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		maxOrgs: max(opts.MaxOrgs, 0),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "Calls to the proxy listener by org and outcome (allowed, rejected, shadow_rejected, fail_open, fail_closed, bad_request, unauthorized, client_closed, body_buffer_full)."},
			[]string{"org", "edition", "outcome"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rejections_total",
			Help: "Calls refused (or, in shadow mode, that would have been) by org and reason (credits, concurrency, heavy_concurrency, cost_exceeds_limit, monthly_quota)."},
			[]string{"org", "edition", "reason"}),
		debited: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "credits_debited_total",
			Help: "Credits debited from orgs' windows (refunds are counted apart)."}, orgLabels),
		refunded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "credits_refunded_total",
			Help: "Credits given back because the gateway could not reach the upstream."}, orgLabels),
		addon: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "addon_credits_total",
			Help: "Add-on credits consumed: the part of debits above the org's free allotment."}, orgLabels),
		ruleReqs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rule_requests_total",
			Help: "Calls by the cost-table rule that priced them, and outcome."}, []string{"rule", "outcome"}),
		ruleCredits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rule_credits_total",
			Help: "Credits debited by the cost-table rule that priced the calls."}, []string{"rule"}),
		limiterDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "limiter_duration_seconds",
			Help: "Time of one credit store call (spend, refund, release) by result (ok, rejected, error).", Buckets: limiterBuckets},
			[]string{"op", "result"}),
		upstreamDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "upstream_duration_seconds",
			Help: "Time from forwarding a call to the upstream's response headers, by rule and status class.", Buckets: upstreamBuckets},
			[]string{"rule", "code"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "redis_errors_total",
			Help: "Credit store calls that failed (Redis unreachable, timed out or erring), by op."}, []string{"op"}),
		breakerSt: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "breaker_state",
			Help: "The credit store circuit breaker: 0 closed (Redis in use), 1 half-open (probing), 2 open (Redis skipped, fail mode applies)."}),
		breakerTr: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "breaker_transitions_total",
			Help: "Changes of the credit store circuit breaker, by the state entered."}, []string{"state"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "in_flight_requests",
			Help: "Calls on the proxy listener being served right now."}),
		bodyHeld: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "body_buffer_bytes",
			Help: "Bytes of request bodies held in memory to count their records, right now."}),
		bodyPeak: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "body_buffer_peak_bytes",
			Help: "The most bytes of request bodies held at once since the gateway started."}),
		bodyLimit: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "body_buffer_limit_bytes",
			Help: "The body buffer budget (CREDITGATE_BODY_BUFFER_BYTES)."}),
		bodyRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "body_buffer_refusals_total",
			Help: "Calls answered 503 BODY_BUFFER_FULL, by the bound they met: total (the whole budget) or org (the org's share)."},
			[]string{"scope"}),
		compensations: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "compensations_total",
			Help: "Debits whose reply from the store was lost (timeout, reset, breaker), queued to be undone by call id."}),
		localLedger: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "local_ledger_calls",
			Help: "Calls admitted on this gateway's own while the store could not decide (fail mode local), not yet written into it."}),
		localAdmitted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "local_admitted_total",
			Help: "Calls admitted on this gateway's own while the store could not decide (fail mode local)."}),
		preflights: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "preflights_total",
			Help: "CORS preflights: answered by the gateway's policy, forwarded (no policy), or refused past the rate bound."}, []string{"handled"}),
		liveGateways: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "gateways_alive",
			Help: "Gateways sharing the store at the last heartbeat (fail mode local): each admits this share of an org's credits on its own."}),
		deferredLen: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "store_calls_queued",
			Help: "Refunds, compensations and lease releases waiting for the store to answer."}),
		droppedCalls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "store_calls_dropped_total",
			Help: "Refunds, compensations and releases given up on, by op and reason (queue_full, expired)."}, []string{"op", "reason"}),
		noticesVec: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "notices_total",
			Help: "Usage notices by outcome: queued (by a debit that crossed a threshold), delivered, retried (an attempt failed) and dropped (out of attempts, or no endpoint)."},
			[]string{"outcome"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "upstream_retries_prevented_total",
			Help: "Second attempts the upstream transport would have made for a call already sent, stopped before a byte left."}),
		labels: map[string]string{},
		series: map[[2]string]*orgSeries{},
	}
	m.reg.MustRegister(m.requests, m.rejections, m.debited, m.refunded, m.addon, m.ruleReqs, m.ruleCredits,
		m.limiterDur, m.upstreamDur, m.redisErrors, m.breakerSt, m.breakerTr, m.inFlight,
		m.bodyHeld, m.bodyPeak, m.bodyLimit, m.bodyRefused, m.retries,
		m.compensations, m.deferredLen, m.droppedCalls, m.noticesVec, m.localLedger, m.localAdmitted, m.liveGateways, m.preflights,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for op := range numStoreOps {
		for res := range numStoreResults {
			m.storeOps[op][res] = m.limiterDur.WithLabelValues(storeOpNames[op], storeResultNames[res])
		}
		m.storeErr[op] = m.redisErrors.WithLabelValues(storeOpNames[op])
	}
	unread := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "settle_unread_total",
		Help: "Responses of rules that settle their cost from the answer which could not be read (the call keeps its reserved cost), by reason."},
		[]string{"reason"})
	m.reg.MustRegister(unread)
	for i, name := range unreadNames {
		m.settleUnread[i] = unread.WithLabelValues(name)
	}
	for _, s := range breakerNames {
		m.breakerTr.WithLabelValues(s)
	}
	for _, h := range []string{"answered", "forwarded", "refused"} {
		m.preflights.WithLabelValues(h)
	}
	for i, name := range noticeOutcomeNames {
		m.notices[i] = m.noticesVec.WithLabelValues(name)
	}
	m.bodyRefused.WithLabelValues("total")
	m.bodyRefused.WithLabelValues("org")
	m.unknown = &orgSeries{}
	m.unknown.requests[outUnauthorized] = m.requests.WithLabelValues("unknown", "unknown", outcomeNames[outUnauthorized])
	m.rules.Store(&ruleSeriesM{})
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry returns the private registry, for collectors of other components.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// AddAddonCredits counts credits of org's debits that were add-on consumption (above its
// free allotment). The billing code calls it once per debit with the add-on part of the
// Decision; an org not configured is ignored.
func (m *Metrics) AddAddonCredits(org string, credits int64) {
	if credits <= 0 {
		return
	}
	if dir := m.orgs.Load(); dir != nil {
		if o, ok := dir.ByID(org); ok {
			m.seriesOf(o).addon.Add(float64(credits))
		}
	}
}

// setOrgs creates the series of the orgs in dir, so that they show from the start: orgs
// get label values of their own in the order they are configured until MaxOrgs are taken,
// the others share "other" by edition. An org keeps its label across reloads, so series
// never change hands. The org states look their series up with seriesOf when they are
// prepared.
func (m *Metrics) setOrgs(dir *orgs.Directory) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range dir.Len() {
		m.seriesLocked(dir.At(i))
	}
	m.orgs.Store(dir)
}

// seriesOf returns the series of o: a configured org, or one a token brought (which may
// take a label of its own while fewer than MaxOrgs have one).
func (m *Metrics) seriesOf(o *orgs.Org) *orgSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seriesLocked(o)
}

// seriesLocked returns the series of o, with m.mu held: its own org label while fewer than
// MaxOrgs have one, else "other".
func (m *Metrics) seriesLocked(o *orgs.Org) *orgSeries {
	label, ok := m.labels[o.ID]
	if !ok {
		label = "other"
		if len(m.labels) < m.maxOrgs {
			label = o.ID
			m.labels[o.ID] = label
		}
	}
	edition := o.Edition
	if edition == "" {
		edition = "custom"
	}
	k := [2]string{label, edition}
	s := m.series[k]
	if s == nil {
		s = &orgSeries{
			debited:  m.debited.WithLabelValues(label, edition),
			refunded: m.refunded.WithLabelValues(label, edition),
			addon:    m.addon.WithLabelValues(label, edition),
		}
		for i := range numOutcomes {
			if i != outUnauthorized {
				s.requests[i] = m.requests.WithLabelValues(label, edition, outcomeNames[i])
			}
		}
		for i := range numReasons {
			s.rejections[i] = m.rejections.WithLabelValues(label, edition, reasonNames[i])
		}
		m.series[k] = s
	}
	return s
}

// setRules resolves the series of every rule name in names (a cost table's rules), keeping
// those of the rules already known: a call priced by the table being replaced still finds
// its rule.
func (m *Metrics) setRules(names ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.rules.Load()
	next := make(ruleSeriesM, len(old)+len(names))
	for name, s := range old {
		next[name] = s
	}
	for _, name := range names {
		if next[name] != nil {
			continue
		}
		s := &ruleSeries{credits: m.ruleCredits.WithLabelValues(name)}
		for i := range numOutcomes {
			if i != outUnauthorized {
				s.requests[i] = m.ruleReqs.WithLabelValues(name, outcomeNames[i])
			}
		}
		for i, c := range codeClasses {
			s.upstream[i] = m.upstreamDur.WithLabelValues(name, c)
		}
		next[name] = s
	}
	m.rules.Store(&next)
}

// rule returns the series of a rule of a loaded table.
func (m *Metrics) rule(name string) *ruleSeries {
	if s := (*m.rules.Load())[name]; s != nil {
		return s
	}
	m.setRules(name) // not reached for rules of loaded tables
	return (*m.rules.Load())[name]
}

// count records the outcome of one call: the one place the request path counts. s and rs
// are nil for calls that named no known org; reason is used for rejections only.
func (m *Metrics) count(s *orgSeries, rs *ruleSeries, outcome, reason int, credits int64) {
	if s == nil {
		m.unknown.requests[outUnauthorized].Inc()
		return
	}
	s.requests[outcome].Inc()
	if rs != nil {
		rs.requests[outcome].Inc()
	}
	switch outcome {
	case outAllowed:
		if credits > 0 {
			s.debited.Add(float64(credits))
			if rs != nil {
				rs.credits.Add(float64(credits))
			}
		}
	case outRejected, outShadowRejected:
		s.rejections[reason].Inc()
	}
}

// settled counts the credits of an allowed call whose rule settles from the response, counted
// with none when it was admitted: the settled cost (or the reservation it kept), addon of
// them add-on credits.
func (m *Metrics) settled(s *orgSeries, rs *ruleSeries, credits, addon int64) {
	if s == nil {
		return
	}
	if credits > 0 {
		s.debited.Add(float64(credits))
		if rs != nil {
			rs.credits.Add(float64(credits))
		}
	}
	if addon > 0 {
		s.addon.Add(float64(addon))
	}
}

// observeStore records one store call.
func (m *Metrics) observeStore(op, result int, since time.Time) {
	m.storeOps[op][result].Observe(time.Since(since).Seconds())
	if result == resultError {
		m.storeErr[op].Inc()
	}
}

// observeUpstream records one forwarded call, by the upstream's status (0: no answer).
func (rs *ruleSeries) observeUpstream(status int, since time.Time) {
	c := codeError
	if status >= 100 && status < 600 {
		c = status/100 - 1
	}
	rs.upstream[c].Observe(time.Since(since).Seconds())
}

// ruleNames lists the names of t's rules, its fallback included.
func ruleNames(t *costtable.Table) []string {
	rules := t.Rules()
	names := make([]string, 0, len(rules)+1)
	for _, r := range rules {
		names = append(names, r.Name)
	}
	return append(names, t.Fallback().Name)
}
