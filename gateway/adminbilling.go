package gateway

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/plans"
)

// apiError is an admin API refusal that carries its own status, code, message and details.
type apiError struct {
	status  int
	code    string
	msg     string
	details map[string]any
}

func (e *apiError) Error() string { return e.msg }

var errNoBilling = &apiError{status: http.StatusNotImplemented, code: "NOT_SUPPORTED",
	msg: "The credit store does not hold add-on credits."}

func notFound(what string) error {
	return &apiError{status: http.StatusNotFound, code: "NOT_FOUND", msg: what + " is not known."}
}

func invalidData(msg string, details map[string]any) error {
	return &apiError{status: http.StatusUnprocessableEntity, code: "INVALID_DATA", msg: msg, details: details}
}

func badRequest(msg string) error {
	return &apiError{status: http.StatusBadRequest, code: "INVALID_DATA", msg: msg}
}

func (g *Gateway) slabs() plans.Slabs {
	if len(g.cfg.Slabs) == 0 {
		return plans.DefaultSlabs
	}
	return g.cfg.Slabs
}

// meter reports errNoBilling when the store keeps no add-on limits and metered credits.
func (g *Gateway) meter() error {
	if !g.has(StoreBilling) {
		return errNoBilling
	}
	return nil
}

// tenantByID returns the org named in the request path.
func (g *Gateway) tenantByID(r *http.Request) (*orgState, error) {
	if t, ok := g.orgByID(r.PathValue("org")); ok {
		return t, nil
	}
	return nil, notFound("The org")
}

// addonRequest is the body of PUT /admin/v1/orgs/{org}/addon.
type addonRequest struct {
	Limit *int64 `json:"limit"`
}

func (g *Gateway) putAddon(w http.ResponseWriter, r *http.Request) {
	t, err := g.tenantByID(r)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	var req addonRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Limit == nil {
		writeError(w, badRequest(`The body must be {"limit":N}, N the add-on credits per window (0 switches add-ons off).`), 0)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, badRequest("The body must hold one JSON object."), 0)
		return
	}
	g.setAddon(w, r, t, *req.Limit)
}

func (g *Gateway) deleteAddon(w http.ResponseWriter, r *http.Request) {
	t, err := g.tenantByID(r)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	g.setAddon(w, r, t, 0)
}

// setAddon stores t's add-on limit after checking it against the cap, and answers the org's
// usage with it in force.
func (g *Gateway) setAddon(w http.ResponseWriter, r *http.Request, t *orgState, limit int64) {
	if err := g.meter(); err != nil {
		writeError(w, err, 0)
		return
	}
	if !g.has(StoreUsage) {
		writeError(w, errNoUsage, 0) // it could not answer the new usage
		return
	}
	p := t.plan
	switch {
	case p.Monthly > 0 && (limit < 0 || limit > p.Cap):
		writeError(w, invalidData("The additional calls must be between 0 and "+strconv.FormatInt(p.Cap, 10)+
			" (twice the monthly limit).", map[string]any{"cap": p.Cap, "limit": limit}), 0)
		return
	case p.Monthly > 0:
	case p.Cap == 0 && limit > 0:
		writeError(w, invalidData("This org's edition cannot have add-on credits (free and trial editions, and orgs without an edition, cannot).",
			map[string]any{"cap": 0, "edition": p.Edition}), 0)
		return
	case limit < 0 || limit > p.Cap:
		writeError(w, invalidData("The add-on limit must be between 0 and "+strconv.FormatInt(p.Cap, 10)+
			": at most 500,000, and at most the edition's maximum minus the free allotment.",
			map[string]any{"cap": p.Cap, "limit": limit}), 0)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.StoreTimeout)
	defer cancel()
	if err := g.cfg.Store.SetAddon(ctx, t.org.ID, limit); err != nil {
		g.log.Error("add-on limit not stored", zap.String("org", t.org.ID), zap.Error(err))
		writeError(w, errStoreUnavailable, 1)
		return
	}
	g.log.Info("add-on limit set", zap.String("org", t.org.ID), zap.Int64("addon", limit))
	u, ok := g.readUsage(w, r, t)
	if !ok {
		return
	}
	resp := g.usageOf(t, u)
	if t.period != nil {
		if !g.addPeriodUsage(w, r, t, &resp) {
			return
		}
		resp.AdditionalCap = &p.Cap
	} else {
		resp.AddonCap = &p.Cap
	}
	writeJSON(w, resp)
}

// quoteResponse is the reference's calculator: what an add-on limit costs if fully used.
type quoteResponse struct {
	AddonCredits        int64              `json:"addon_credits"`
	DailyAmountMicros   int64              `json:"daily_amount_micros"`
	MonthlyAmountMicros int64              `json:"monthly_amount_micros"` // 30 days
	Slabs               []plans.SlabCharge `json:"slabs"`
}

func (g *Gateway) quote(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("addon_credits")
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 || n > plans.MaxAllotment {
		writeError(w, badRequest("addon_credits must be a whole number of credits from 0 to "+
			strconv.FormatInt(plans.MaxAllotment, 10)+"."), 0)
		return
	}
	day, slabs := g.slabs().Price(n)
	if day > plans.MaxMicros/30 {
		// Amounts saturate rather than overflow; a saturated amount is not a price.
		writeError(w, badRequest("addon_credits is too large to quote: the monthly amount would exceed "+
			strconv.FormatInt(plans.MaxMicros, 10)+" micro-dollars."), 0)
		return
	}
	writeJSON(w, quoteResponse{AddonCredits: n, DailyAmountMicros: day, MonthlyAmountMicros: day * 30, Slabs: slabs})
}

// billingDay is one UTC day of a billing report.
type billingDay struct {
	Date         string             `json:"date"`
	AddonCredits int64              `json:"addon_credits"`
	AmountMicros int64              `json:"amount_micros"`
	Slabs        []plans.SlabCharge `json:"slabs"`
}

// billingReport is the answer of GET /admin/v1/orgs/{org}/billing.
type billingReport struct {
	Org               string       `json:"org"`
	From              string       `json:"from"`
	To                string       `json:"to"`
	Currency          string       `json:"currency"`
	Days              []billingDay `json:"days"`
	TotalAddonCredits int64        `json:"total_addon_credits"`
	TotalAmountMicros int64        `json:"total_amount_micros"`
}

const dateLayout = "2006-01-02"

func (g *Gateway) billingReport(w http.ResponseWriter, r *http.Request) {
	t, err := g.tenantByID(r)
	if err != nil {
		writeError(w, err, 0)
		return
	}
	if err := g.meter(); err != nil {
		writeError(w, err, 0)
		return
	}
	q := r.URL.Query()
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		writeError(w, badRequest("format must be json or csv."), 0)
		return
	}
	now := time.Now()
	if g.cfg.Clock != nil {
		now = g.cfg.Clock()
	}
	to, from := limiter.Day(now), int64(0)
	if s := q.Get("to"); s != "" {
		d, err := time.Parse(dateLayout, s)
		if err != nil {
			writeError(w, badRequest("to must be a date, YYYY-MM-DD."), 0)
			return
		}
		to = limiter.Day(d)
	}
	from = to - 29
	if s := q.Get("from"); s != "" {
		d, err := time.Parse(dateLayout, s)
		if err != nil {
			writeError(w, badRequest("from must be a date, YYYY-MM-DD."), 0)
			return
		}
		from = limiter.Day(d)
	}
	switch {
	case from > to:
		writeError(w, badRequest("from must not be after to."), 0)
		return
	case to-from >= limiter.MeterDays:
		writeError(w, badRequest("A report covers at most "+strconv.Itoa(limiter.MeterDays)+" days (the days kept)."), 0)
		return
	case from <= limiter.Day(now)-limiter.MeterDays:
		writeError(w, badRequest("Daily records are kept "+strconv.Itoa(limiter.MeterDays)+" days: from must be "+
			dayString(limiter.Day(now)-limiter.MeterDays+1)+" or later."), 0)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.StoreTimeout)
	defer cancel()
	used, err := g.cfg.Store.Metered(ctx, t.org.ID, from, to)
	if err != nil {
		g.log.Error("billing not read", zap.String("org", t.org.ID), zap.Error(err))
		writeError(w, errStoreUnavailable, 1)
		return
	}
	if t.period != nil {
		writeMonthlyReport(w, t, from, to, used, format == "csv")
		return
	}
	rep := billingReport{Org: t.org.ID, From: dayString(from), To: dayString(to), Currency: "USD", Days: []billingDay{}}
	slabs := g.slabs()
	for day := from; day <= to; day++ {
		credits := used[day]
		amount, charges := slabs.Price(credits)
		bd := billingDay{Date: dayString(day), AddonCredits: credits, AmountMicros: amount, Slabs: []plans.SlabCharge{}}
		for _, c := range charges {
			if c.Credits > 0 {
				bd.Slabs = append(bd.Slabs, c)
			}
		}
		rep.Days = append(rep.Days, bd)
		rep.TotalAddonCredits += credits
		rep.TotalAmountMicros += amount
	}
	if format == "csv" {
		writeBillingCSV(w, rep, slabs)
		return
	}
	writeJSON(w, rep)
}

// writeBillingCSV writes one row per day: date, add-on credits, then credits and amount per
// slab, then the day's amount; a last row holds the totals.
func writeBillingCSV(w http.ResponseWriter, rep billingReport, slabs plans.Slabs) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="billing-`+rep.Org+`-`+rep.From+`-`+rep.To+`.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	head := []string{"date", "addon_credits"}
	for i, s := range slabs {
		n := strconv.Itoa(i + 1)
		head = append(head, "slab"+n+"_credits_at_"+plans.FormatMicros(s.PricePer1000)+"_per_1000", "slab"+n+"_amount_micros")
	}
	head = append(head, "amount_micros")
	_ = cw.Write(head)
	for _, d := range rep.Days {
		row := []string{d.Date, strconv.FormatInt(d.AddonCredits, 10)}
		_, charges := slabs.Price(d.AddonCredits)
		for _, c := range charges {
			row = append(row, strconv.FormatInt(c.Credits, 10), strconv.FormatInt(c.Amount, 10))
		}
		_ = cw.Write(append(row, strconv.FormatInt(d.AmountMicros, 10)))
	}
	total := []string{"total", strconv.FormatInt(rep.TotalAddonCredits, 10)}
	for range slabs {
		total = append(total, "", "")
	}
	_ = cw.Write(append(total, strconv.FormatInt(rep.TotalAmountMicros, 10)))
	cw.Flush()
}

func dayString(day int64) string {
	return time.UnixMilli(day * 24 * int64(time.Hour/time.Millisecond)).UTC().Format(dateLayout)
}

// monthlyDay is one UTC day of a monthly plan's billing report.
type monthlyDay struct {
	Date               string `json:"date"`
	AdditionalCalls    int64  `json:"additional_calls"`
	PricePerCallMicros int64  `json:"price_per_call_micros"`
	AmountMicros       int64  `json:"amount_micros"`
}

type monthlyReport struct {
	Org                  string       `json:"org"`
	From                 string       `json:"from"`
	To                   string       `json:"to"`
	Currency             string       `json:"currency"`
	Days                 []monthlyDay `json:"days"`
	TotalAdditionalCalls int64        `json:"total_additional_calls"`
	TotalAmountMicros    int64        `json:"total_amount_micros"`
}

// writeMonthlyReport answers the billing report of a monthly plan: additional calls per day,
// each at the plan's price per call.
func writeMonthlyReport(w http.ResponseWriter, t *orgState, from, to int64, used map[int64]int64, csvOut bool) {
	rep := monthlyReport{Org: t.org.ID, From: dayString(from), To: dayString(to), Currency: "USD", Days: []monthlyDay{}}
	price := t.plan.CallPrice
	for day := from; day <= to; day++ {
		n := used[day]
		amount := min(n, maxCalls) * price
		rep.Days = append(rep.Days, monthlyDay{Date: dayString(day), AdditionalCalls: n, PricePerCallMicros: price, AmountMicros: amount})
		rep.TotalAdditionalCalls += n
		rep.TotalAmountMicros += amount
	}
	if !csvOut {
		writeJSON(w, rep)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="billing-`+rep.Org+`-`+rep.From+`-`+rep.To+`.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"date", "additional_calls", "price_per_call_micros", "amount_micros"})
	for _, d := range rep.Days {
		_ = cw.Write([]string{d.Date, strconv.FormatInt(d.AdditionalCalls, 10), strconv.FormatInt(price, 10), strconv.FormatInt(d.AmountMicros, 10)})
	}
	_ = cw.Write([]string{"total", strconv.FormatInt(rep.TotalAdditionalCalls, 10), "", strconv.FormatInt(rep.TotalAmountMicros, 10)})
	cw.Flush()
}

// maxCalls bounds a day's additional calls in amounts (a period allows at most twice the
// monthly limit); with prices of at most $1,000 a call it keeps calls × price from overflow.
const maxCalls = 1 << 32
