package gateway

import (
	"context"
	"encoding/csv"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/limiter"
)

// periodExhausted is the refusal of a monthly plan's call when the period's calls (monthly
// limit and additional calls) are used up.
func periodExhausted(monthly, additional int64, end time.Time) error {
	return &apiError{
		status: http.StatusTooManyRequests, code: "TOO_MANY_REQUESTS",
		msg: "The monthly call limit and the additional calls of this subscription period are used up; " +
			"calls resume when the next period starts.",
		details: map[string]any{
			"monthly_limit": monthly, "additional_calls": additional,
			"period_end": end.UTC().Format(time.RFC3339),
		},
	}
}

var errNoPeriods = errors.New("the credit store does not count monthly plans")

// countCall counts a monthly plan's call against its subscription period. It returns false
// when it has answered the call itself: the period's calls are used up, or the store cannot
// decide and the fail mode is closed. A call it lets through uncounted (shadow mode, fail
// open) has a zero PeriodDecision.
func (g *Gateway) countCall(w http.ResponseWriter, r *http.Request, t *tenant, rule string, rs *ruleSeries, now time.Time) (limiter.PeriodDecision, bool) {
	ps, ok := g.cfg.Store.(limiter.PeriodStore)
	var (
		d   limiter.PeriodDecision
		err = errNoPeriods
	)
	if ok {
		d, err = g.spendCall(r.Context(), ps, *t.period, now)
	}
	h := w.Header()
	switch {
	case err == nil:
		return d, true
	case errors.Is(err, limiter.ErrPeriodExhausted):
		if g.cfg.Shadow {
			g.log.Info("shadow rejection", zap.String("org", t.org.ID), zap.String("rule", rule),
				zap.String("reason", "period"), zap.Int64("period_used", d.Used))
			// The rejection only: the call goes on to the window, which counts its outcome.
			if t.m != nil {
				t.m.rejections[reasonMonthlyQuota].Inc()
			}
			return limiter.PeriodDecision{}, true
		}
		g.log.Info("rejected", zap.String("org", t.org.ID), zap.String("rule", rule),
			zap.String("reason", "period"), zap.Int64("period_used", d.Used), zap.Time("period_end", d.End))
		g.metrics.count(t.m, rs, outRejected, reasonMonthlyQuota, 0)
		wait := d.End.Sub(now)
		if now.IsZero() {
			wait = time.Until(d.End)
		}
		secs := strconv.FormatInt(ceilSeconds(wait), 10)
		// The credit window was not read; the period is what refuses the call, so it is
		// the policy with nothing remaining until it ends.
		h.Set("X-Ratelimit-Limit", t.limit)
		h.Set("X-Ratelimit-Remaining", "0")
		h.Set("X-Ratelimit-Reset", secs)
		period := strconv.FormatInt(int64(d.End.Sub(d.Start)/time.Second), 10)
		switch t.fields {
		case FieldsDraft:
			h.Set("Ratelimit-Policy", t.policy+`, "monthly";q=`+strconv.FormatInt(d.Limit, 10)+`;w=`+period)
			h.Set("Ratelimit", `"monthly";r=0;t=`+secs)
		case FieldsDraft7: // one policy only: the period's
			h.Set("Ratelimit-Policy", strconv.FormatInt(d.Limit, 10)+";w="+period)
			h.Set("Ratelimit", "limit="+strconv.FormatInt(d.Limit, 10)+", remaining=0, reset="+secs)
		}
		h.Set("X-Credits-Charged", "0")
		writeError(w, periodExhausted(t.period.Monthly, d.Limit-t.period.Monthly, d.End), ceilSeconds(wait))
		return d, false
	default:
		if r.Context().Err() != nil {
			return d, false
		}
		failOpen := g.cfg.FailOpen || g.cfg.Shadow
		if err != errBreakerOpen { // the breaker logs once when it opens
			g.log.Error("credit store error", zap.String("org", t.org.ID), zap.String("rule", rule),
				zap.String("reason", "period"), zap.Bool("fail_open", failOpen), zap.Error(err))
		}
		if !failOpen {
			g.metrics.count(t.m, rs, outFailClosed, 0, 0)
			setPolicyFields(h, t)
			writeError(w, errStoreUnavailable, 1)
			return d, false
		}
		return limiter.PeriodDecision{}, true
	}
}

// uncountCall gives back a counted call of a monthly plan that was not served.
func (g *Gateway) uncountCall(r *http.Request, t *tenant, d limiter.PeriodDecision) {
	ps, ok := g.cfg.Store.(limiter.PeriodStore)
	if !ok || !d.Allowed || t.period == nil {
		return
	}
	// Not retried after a failure: taking a call back twice would take back two.
	err := g.storeCall(r.Context(), opRefund, false, func(ctx context.Context) error { return ps.RefundCall(ctx, *t.period, d) })
	if err != nil {
		g.log.Error("period refund failed", zap.String("org", t.org.ID), zap.Error(err))
	}
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
func writeMonthlyReport(w http.ResponseWriter, t *tenant, from, to int64, used map[int64]int64, csvOut bool) {
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
