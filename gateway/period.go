package gateway

import (
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

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

// countPeriod counts a monthly plan's call against its subscription period, before the
// window's debit; a call that is not forwarded after all is given back (finish). It reports
// whether the call goes on; otherwise it has answered it: the period's calls are used up, or
// the store cannot decide and the fail mode is closed. A call let through uncounted (shadow
// mode, fail open) keeps a zero PeriodDecision.
func (g *Gateway) countPeriod(w http.ResponseWriter, r *http.Request, c *call) bool {
	d, err := g.spendCall(r.Context(), *c.t.period, c.now)
	if err == nil {
		c.pd = d
		return true
	}
	return g.pass(w, r, c, g.periodRefusal(r, c, d, err))
}

// periodRefusal is the refusal of a monthly plan's call that the store answered with d and
// err (not nil).
func (g *Gateway) periodRefusal(r *http.Request, c *call, d limiter.PeriodDecision, err error) refusal {
	t, now := c.t, c.now
	switch {
	case errors.Is(err, limiter.ErrPeriodExhausted):
		wait := d.End.Sub(now)
		if now.IsZero() {
			wait = time.Until(d.End)
		}
		return refusal{kind: rejection, before: true, out: outRejected, reason: reasonMonthlyQuota,
			msg: "rejected", level: zapcore.InfoLevel,
			fields:       []zap.Field{zap.String("reason", "period"), zap.Int64("period_used", d.Used), zap.Time("period_end", d.End)},
			shadowFields: []zap.Field{zap.String("reason", "period"), zap.Int64("period_used", d.Used)},
			answerFields: func(h http.Header) { setPeriodFields(h, t, d, wait) },
			err:          periodExhausted(t.period.Monthly, d.Limit-t.period.Monthly, d.End), retry: ceilSeconds(wait)}
	case r.Context().Err() != nil:
		return refusal{kind: final, out: noOutcome}
	}
	return refusal{kind: storeDown, before: true, cause: err, level: zapcore.ErrorLevel,
		fields: []zap.Field{zap.String("reason", "period")}}
}

// uncountCall gives back a counted call of a monthly plan that was not served.
func (g *Gateway) uncountCall(r *http.Request, t *orgState, d limiter.PeriodDecision) {
	if !g.has(StorePeriods) || !d.Allowed || t.period == nil {
		return
	}
	if err := g.refundPeriodCall(r.Context(), *t.period, d); err != nil {
		g.log.Error("period refund failed", zap.String("org", t.org.ID), zap.Error(err))
	}
}
