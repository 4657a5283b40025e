package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// Paths of the org's own usage on the proxy listener: answered by the gateway, never
// forwarded, never charged.
const (
	ownUsagePath      = "/creditgate/v1/usage"
	ownUsageHoursPath = "/creditgate/v1/usage/hours"
)

var (
	errOrgNotFound      = errors.New("org not found")
	errNoUsage          = errors.New("store cannot report usage")
	errMethodNotAllowed = errors.New("method not allowed")
)

// usageResponse is the body of GET /admin/v1/orgs/{org}/usage and GET /creditgate/v1/usage
// (docs/api.md, "Usage: API and page"). The monthly-plan fields belong with monthly plans and are not sent yet.
type usageResponse struct {
	Org               string `json:"org"`
	Edition           string `json:"edition"`
	DailyFreeLimit    int64  `json:"daily_free_limit"`
	AdditionalCredits int64  `json:"additional_credits"`
	// AddonCap is the most additional_credits may be; only in answers to an add-on change.
	AddonCap         *int64  `json:"addon_cap,omitempty"`
	OverallCredits   int64   `json:"overall_credits"`
	UsedCredits      int64   `json:"used_credits"`
	UnusedCredits    int64   `json:"unused_credits"`
	PercentUsed      float64 `json:"percent_used"` // of overall_credits, two decimals
	ConcurrencyLimit int64   `json:"concurrency_limit"`
	ConcurrencyInUse int64   `json:"concurrency_in_use"`
	WindowSeconds    int64   `json:"window_seconds"`
	// NextFreeAt is when the oldest consumed credits free up; null when nothing is consumed.
	NextFreeAt *string `json:"next_free_at"`
	// AsOf is the instant of the read on the store's clock.
	AsOf string `json:"as_of"`

	// Monthly plans only: calls per period, additional calls allowed on top (and, in answers
	// to a change, the most they may be), calls counted in the current period, and when it
	// starts and ends (RFC 3339).
	MonthlyLimit    *int64  `json:"monthly_limit,omitempty"`
	AdditionalCalls *int64  `json:"additional_calls,omitempty"`
	AdditionalCap   *int64  `json:"additional_cap,omitempty"`
	PeriodUsed      *int64  `json:"period_used,omitempty"`
	PeriodStart     *string `json:"period_start,omitempty"`
	PeriodEnd       *string `json:"period_end,omitempty"`

	// Notices are the org's usage notice thresholds, armed and fired; absent when it has
	// none (or the store keeps no notices).
	Notices *usageNotices `json:"notices,omitempty"`
}

// hoursResponse is the body of GET /admin/v1/orgs/{org}/usage/hours: credits by slot (an hour
// for a 24h window) and rule over the window, every slot listed, oldest first.
type hoursResponse struct {
	Org           string   `json:"org"`
	WindowSeconds int64    `json:"window_seconds"`
	SlotSeconds   float64  `json:"slot_seconds"`
	AsOf          string   `json:"as_of"`
	Rules         []string `json:"rules"` // every rule in slots, by credits, largest first
	TotalCredits  int64    `json:"total_credits"`
	// ByRoute is the credits over the window by route, with routes (CREDITGATE_ROUTES_FILE),
	// whose rules are named "route/rule".
	ByRoute map[string]int64 `json:"by_route,omitempty"`
	Slots   []hourSlot       `json:"slots"`
	byRule  map[string]int64
}

type hourSlot struct {
	Start   string           `json:"start"`
	End     string           `json:"end"`
	Credits int64            `json:"credits"`
	ByRule  map[string]int64 `json:"by_rule"`
}

type orgsResponse struct {
	Orgs []orgSummary `json:"orgs"`
}

type orgSummary struct {
	Org     string `json:"org"`
	Edition string `json:"edition"`
}

// orgUsage answers GET /admin/v1/orgs/{org}/usage.
func (g *Gateway) orgUsage(w http.ResponseWriter, r *http.Request) {
	if t, ok := g.orgOr404(w, r); ok {
		g.serveUsage(w, r, t, false)
	}
}

// orgUsageHours answers GET /admin/v1/orgs/{org}/usage/hours.
func (g *Gateway) orgUsageHours(w http.ResponseWriter, r *http.Request) {
	if t, ok := g.orgOr404(w, r); ok {
		g.serveUsageHours(w, r, t)
	}
}

// orgOr404 returns the org named in the request path, or answers 404.
func (g *Gateway) orgOr404(w http.ResponseWriter, r *http.Request) (*orgState, bool) {
	t, ok := g.orgByID(r.PathValue("org"))
	if !ok {
		writeError(w, errOrgNotFound, 0)
		return nil, false
	}
	return t, true
}

func (g *Gateway) listOrgs(w http.ResponseWriter, r *http.Request) {
	var resp orgsResponse
	for _, o := range g.orgs.Load().dir.Orgs() {
		resp.Orgs = append(resp.Orgs, orgSummary{Org: o.ID, Edition: o.Edition})
	}
	resp.Orgs = append(resp.Orgs, g.jwtOrgSummaries()...) // orgs on the default plan
	slices.SortFunc(resp.Orgs, func(a, b orgSummary) int { return cmp.Compare(a.Org, b.Org) })
	writeJSON(w, resp)
}

// serveOwnUsage answers an org's own usage calls on the proxy listener.
func (g *Gateway) serveOwnUsage(w http.ResponseWriter, r *http.Request, t *orgState) {
	h := w.Header()
	h.Set("X-Credits-Charged", "0")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		setPolicyFields(h, t)
		h.Set("Allow", "GET, HEAD")
		writeError(w, errMethodNotAllowed, 0)
		return
	}
	if r.URL.Path == ownUsageHoursPath {
		g.serveUsageHours(w, r, t)
		return
	}
	g.serveUsage(w, r, t, true)
}

// readUsage reads t's window once, on the gateway's clock if it has one.
func (g *Gateway) readUsage(w http.ResponseWriter, r *http.Request, t *orgState) (limiter.Usage, bool) {
	if !g.has(StoreUsage) {
		writeError(w, errNoUsage, 0)
		return limiter.Usage{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.StoreTimeout)
	u, err := g.cfg.Store.Usage(ctx, t.key, g.decisionTime())
	cancel()
	if err != nil {
		g.log.Error("usage read failed", zap.String("org", t.org.ID), zap.Error(err))
		writeError(w, errStoreUnavailable, 1)
		return u, false
	}
	return u, true
}

// serveUsage answers the usage of "Usage: API and page" in docs/api.md. With limitFields, the rate-limit fields of the
// org's window are sent too, as on a proxied call that cost nothing.
func (g *Gateway) serveUsage(w http.ResponseWriter, r *http.Request, t *orgState, limitFields bool) {
	u, ok := g.readUsage(w, r, t)
	if !ok {
		return
	}
	resp := g.usageOf(t, u)
	if t.period != nil && !g.addPeriodUsage(w, r, t, &resp) {
		return
	}
	resp.Notices = g.usageNoticesOf(r.Context(), t)
	if limitFields {
		// With a concurrency cap, its item too: RateLimit-Policy lists it.
		setLimitFields(w.Header(), t, limiter.Decision{
			Allowed: true, Limit: resp.OverallCredits, Used: u.Used, Remaining: resp.UnusedCredits, Reset: u.Reset,
			ConcurrencyLimit: t.key.Concurrency, InFlight: u.InFlight,
		})
	}
	writeJSON(w, resp)
}

// addPeriodUsage adds a monthly plan's period to resp, reading (not counting) its calls; on a
// store failure it answers the error and returns false.
func (g *Gateway) addPeriodUsage(w http.ResponseWriter, r *http.Request, t *orgState, resp *usageResponse) bool {
	if !g.has(StorePeriods) {
		writeError(w, errNoUsage, 0)
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.StoreTimeout)
	d, err := g.cfg.Store.SpendCall(ctx, *t.period, g.decisionTime(), false)
	cancel()
	if err != nil {
		g.log.Error("period not read", zap.String("org", t.org.ID), zap.Error(err))
		writeError(w, errStoreUnavailable, 1)
		return false
	}
	monthly, additional, used := t.period.Monthly, d.Limit-t.period.Monthly, d.Used
	start, end := d.Start.UTC().Format(time.RFC3339), d.End.UTC().Format(time.RFC3339)
	resp.MonthlyLimit, resp.AdditionalCalls, resp.PeriodUsed = &monthly, &additional, &used
	resp.PeriodStart, resp.PeriodEnd = &start, &end
	return true
}

// usageOf builds the usage body of t from one read of its window.
func (g *Gateway) usageOf(t *orgState, u limiter.Usage) usageResponse {
	overall := t.key.Limit
	var additional int64
	switch {
	case t.plan.Cap > 0 && t.period == nil:
		// Add-ons: the limit is the free allotment plus the add-on limit stored through the
		// admin API (read with the window), else the configured one, at most the cap; as the
		// debit script computes it.
		additional = max(t.plan.Allowance(u.Addon, u.AddonSet), 0)
		overall = t.plan.Free + additional
	case g.cfg.AdditionalOf != nil:
		additional = min(max(g.cfg.AdditionalOf(t.org), 0), overall)
	}
	resp := usageResponse{
		Org:               t.org.ID,
		Edition:           t.org.Edition,
		DailyFreeLimit:    overall - additional,
		AdditionalCredits: additional,
		OverallCredits:    overall,
		UsedCredits:       u.Used,
		UnusedCredits:     max(overall-u.Used, 0),
		ConcurrencyLimit:  t.key.Concurrency,
		ConcurrencyInUse:  u.InFlight,
		WindowSeconds:     int64(g.cfg.Window / time.Second),
		AsOf:              u.Now.UTC().Format(time.RFC3339),
	}
	switch {
	case overall > 0:
		resp.PercentUsed = math.Round(float64(u.Used)*10000/float64(overall)) / 100
	case u.Used > 0:
		resp.PercentUsed = 100
	}
	if u.Used > 0 && u.Reset > 0 {
		// Rounded up to the second, as Retry-After is: never earlier than the credits free up.
		at := u.Now.Add(u.Reset + time.Second - 1).Truncate(time.Second).UTC().Format(time.RFC3339)
		resp.NextFreeAt = &at
	}
	return resp
}

// serveUsageHours answers credits by slot and rule over the window, for the usage chart.
func (g *Gateway) serveUsageHours(w http.ResponseWriter, r *http.Request, t *orgState) {
	u, ok := g.readUsage(w, r, t)
	if !ok {
		return
	}
	writeJSON(w, hoursOf(t.org, u, g.cfg.Window))
}

// hoursOf lists every slot that overlaps the window ending at u.Now, oldest first.
func hoursOf(o *orgs.Org, u limiter.Usage, window time.Duration) hoursResponse {
	slot := u.Slot.Milliseconds()
	now := u.Now.UnixMilli()
	resp := hoursResponse{
		Org:           o.ID,
		WindowSeconds: int64(window / time.Second),
		SlotSeconds:   u.Slot.Seconds(),
		AsOf:          u.Now.UTC().Format(time.RFC3339),
		Rules:         []string{},
		Slots:         []hourSlot{},
		byRule:        map[string]int64{},
	}
	if slot <= 0 {
		return resp
	}
	index := map[int64]int{}
	first := now - window.Milliseconds()
	first -= ((first % slot) + slot) % slot
	for start := first; start <= now; start += slot {
		index[start] = len(resp.Slots)
		resp.Slots = append(resp.Slots, hourSlot{
			Start:  time.UnixMilli(start).UTC().Format(time.RFC3339),
			End:    time.UnixMilli(start + slot).UTC().Format(time.RFC3339),
			ByRule: map[string]int64{},
		})
	}
	for _, ru := range u.ByRule {
		i, ok := index[ru.Start.UnixMilli()]
		if !ok {
			continue // ended before the window began
		}
		s := &resp.Slots[i]
		s.ByRule[ru.Rule] += ru.Credits
		s.Credits += ru.Credits
		resp.TotalCredits += ru.Credits
		resp.byRule[ru.Rule] += ru.Credits
		if route, _, ok := strings.Cut(ru.Rule, "/"); ok {
			if resp.ByRoute == nil {
				resp.ByRoute = map[string]int64{}
			}
			resp.ByRoute[route] += ru.Credits
		}
	}
	for rule := range resp.byRule {
		resp.Rules = append(resp.Rules, rule)
	}
	slices.SortFunc(resp.Rules, func(a, b string) int {
		if c := cmp.Compare(resp.byRule[b], resp.byRule[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return resp
}

// writeJSON answers 200 with v as JSON, never cached.
func writeJSON(w http.ResponseWriter, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
