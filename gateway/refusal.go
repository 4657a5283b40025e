package gateway

import (
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// refusal is a step's verdict against a call, as a value: the answer enforcement gives, what
// is counted and what is logged. Steps build one and hand it to pass, the one place that
// weighs it against shadow mode and the fail mode: shadow mode lets every rejection through,
// uncharged; failing open (or shadow mode) lets a call through when the store cannot decide;
// nothing lets a final refusal through.
type refusal struct {
	kind refusalKind
	// before: the refusal comes before the window's debit (a monthly plan's period), which,
	// when the call goes on, counts its outcome and writes its fields; letting it through
	// then counts only a shadow rejection's reason.
	before bool
	// out is the outcome counted when the call is refused (noOutcome: none), and reason the
	// rejection reason counted with rejections.
	out, reason int
	// err is the answer, rendered by writeError with retry as Retry-After (seconds); nil
	// answers nothing (the client is gone).
	err   error
	retry int64
	// cause is the store's failure (storeDown), logged unless the breaker is open.
	cause error
	// msg is the line logged when the call is refused ("": none), at level, with org, rule
	// and fields; shadow mode logs "shadow rejection" with shadowFields instead.
	msg                  string
	level                zapcore.Level
	fields, shadowFields []zap.Field
	// answerFields writes the rate-limit fields of a refused call's answer; nil: the org's
	// policy (setPolicyFields). keepFields keeps what the step wrote.
	answerFields func(http.Header)
	// abandon: the call's body is left unread (abandonBody) before it is answered.
	abandon bool
}

type refusalKind uint8

const (
	rejection refusalKind = iota // the org's limits refuse the call: shadow mode lets it through
	storeDown                    // the store could not decide: the fail mode says
	final                        // nothing lets the call through (a bad request, the client gone)
)

// noOutcome is a refusal that counts no outcome.
const noOutcome = -1

// keepFields keeps the rate-limit fields the step wrote on the answer.
func keepFields(http.Header) {}

// pass acts on ref, a step's refusal of c: it reports whether the call goes on (uncharged),
// and otherwise has counted, logged and answered it.
func (g *Gateway) pass(w http.ResponseWriter, r *http.Request, c *call, ref refusal) bool {
	t := c.t
	switch ref.kind {
	case rejection:
		if g.cfg.Shadow {
			if ref.before {
				if t.m != nil {
					t.m.rejections[ref.reason].Inc()
				}
			} else {
				g.metrics.count(t.m, c.rs, outShadowRejected, ref.reason, 0)
			}
			g.log.Info("shadow rejection", c.logFields(ref.shadowFields)...)
			return true
		}
	case storeDown:
		failOpen := g.cfg.FailOpen || g.cfg.Shadow // shadow mode never rejects
		// The breaker logs once when it opens; while it is open, calls are not logged one by one.
		if ref.cause != errBreakerOpen {
			g.log.Log(ref.level, "credit store error", c.logFields(ref.fields, zap.Bool("fail_open", failOpen), zap.Error(ref.cause))...)
		}
		if failOpen {
			if !ref.before {
				g.metrics.count(t.m, c.rs, outFailOpen, 0, 0)
				setPolicyFields(w.Header(), t)
			}
			return true
		}
		ref.out, ref.msg, ref.err, ref.retry = outFailClosed, "", errStoreUnavailable, 1
	}
	if ref.out != noOutcome {
		g.metrics.count(t.m, c.rs, ref.out, ref.reason, 0)
	}
	if ref.msg != "" {
		g.log.Log(ref.level, ref.msg, c.logFields(ref.fields)...)
	}
	if ref.err == nil {
		return false
	}
	if ref.abandon {
		abandonBody(w, r)
	}
	if ref.answerFields != nil {
		ref.answerFields(w.Header())
	} else {
		setPolicyFields(w.Header(), t)
	}
	writeError(w, ref.err, ref.retry)
	return false
}

// logFields are the fields of a log line about c: its org and rule, then more.
func (c *call) logFields(fields []zap.Field, more ...zap.Field) []zap.Field {
	out := make([]zap.Field, 0, 2+len(fields)+len(more))
	out = append(out, zap.String("org", c.t.org.ID), zap.String("rule", c.rule))
	return append(append(out, fields...), more...)
}

// unidentified answers a call that names no known org (identify's error): 401, uncharged.
func (g *Gateway) unidentified(w http.ResponseWriter, err error) {
	g.metrics.count(nil, nil, outUnauthorized, 0, 0)
	w.Header().Set("X-Credits-Charged", "0")
	g.log.Debug("unauthenticated", zap.String("reason", err.Error()))
	writeError(w, err, 0)
}
