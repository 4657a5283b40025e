package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

// RateLimitFields says which rate-limit fields answers carry (CREDITGATE_RATELIMIT_FIELDS).
type RateLimitFields string

const (
	// FieldsDraft: the structured RateLimit and RateLimit-Policy of the current IETF draft
	// (draft-ietf-httpapi-ratelimit-headers-08 and later: "credits";r=…;t=…), plus X-RateLimit-*.
	FieldsDraft RateLimitFields = "draft"
	// FieldsDraft7: the combined form of draft 7 (RateLimit: limit=…, remaining=…, reset=…;
	// RateLimit-Policy: <limit>;w=<window>), which express-rate-limit's parser reads, plus
	// X-RateLimit-*.
	FieldsDraft7 RateLimitFields = "draft7"
	// FieldsX: X-RateLimit-Limit, -Remaining and -Reset only.
	FieldsX RateLimitFields = "x"
)

// setPolicyFields writes what is known of the rate-limit fields of t when the window was not
// read (the store could not decide, or the call was answered before it): the policy, and
// nothing charged. Remaining and reset are unknown, so they are not sent.
func setPolicyFields(h http.Header, t *orgState) {
	h.Set("X-Ratelimit-Limit", t.limit)
	if t.policy != "" {
		h.Set("Ratelimit-Policy", t.policy)
	}
	h.Set("X-Credits-Charged", "0")
}

// setLimitFields writes the rate-limit fields (docs/api.md, "Response fields") for decision d. It allocates twice
// whatever the decision: one string holding every number (the values are slices of it) and
// one array behind the six header values. The names are already canonical.
func setLimitFields(h http.Header, t *orgState, d limiter.Decision) {
	wait := d.Reset
	if !d.Allowed && d.RetryAfter > 0 {
		wait = d.RetryAfter // 0 for a cost above the whole limit: waiting never helps, show the reset
	}
	limit, policy := t.limit, t.policy
	if d.Limit != t.key.Limit { // an add-on limit changed at run time (rare: allocates)
		limit = strconv.FormatInt(d.Limit, 10)
		policy = t.policyFor(limit)
	}
	var buf [200]byte // room for every number at its longest
	b := strconv.AppendInt(buf[:0], d.Remaining, 10)
	nRemaining := len(b)
	b = strconv.AppendInt(b, ceilSeconds(wait), 10)
	nSecs := len(b)
	switch t.fields {
	case FieldsDraft7:
		b = append(b, "limit="...)
		b = append(b, limit...)
		b = append(b, ", remaining="...)
		b = append(b, b[:nRemaining]...)
		b = append(b, ", reset="...)
		b = append(b, b[nRemaining:nSecs]...)
	case FieldsDraft:
		b = append(b, `"credits";r=`...)
		b = append(b, b[:nRemaining]...)
		b = append(b, ";t="...)
		b = append(b, b[nRemaining:nSecs]...)
		if c := d.ConcurrencyLimit; c > 0 && c == t.key.Concurrency {
			// The org's cap on calls in flight: what is left of it, and when it refused the
			// call, the wait it asks for (Retry-After: 1).
			b = append(b, `, "concurrency";r=`...)
			b = strconv.AppendInt(b, max(c-d.InFlight, 0), 10)
			if !d.Allowed {
				b = append(b, ";t=1"...)
			}
		}
	}
	nField := len(b)
	b = strconv.AppendInt(b, d.Cost, 10)
	s := string(b)

	v := make([]string, 6)
	v[0], v[1], v[2] = limit, s[:nRemaining], s[nRemaining:nSecs]
	v[3], v[4], v[5] = policy, s[nSecs:nField], s[nField:]
	h["X-Ratelimit-Limit"] = v[0:1:1]
	h["X-Ratelimit-Remaining"] = v[1:2:2]
	h["X-Ratelimit-Reset"] = v[2:3:3]
	if t.fields != FieldsX {
		h["Ratelimit-Policy"] = v[3:4:4]
		h["Ratelimit"] = v[4:5:5]
	}
	h["X-Credits-Charged"] = v[5:6:6]
}

// policyFor is t's RateLimit-Policy with limit credits ("" when the fields have none).
func (t *orgState) policyFor(limit string) string {
	switch t.fields {
	case FieldsDraft7:
		return limit + t.policyTail
	case FieldsX:
		return ""
	}
	return `"credits";q=` + limit + t.policyTail
}

// setRemaining rewrites the fields of an answer after its credits were given back (a refund):
// remaining is raised, the rest stays as it was.
func setRemaining(h http.Header, t *orgState, limit, remaining int64) {
	r := strconv.FormatInt(min(remaining, limit), 10)
	h.Set("X-Ratelimit-Remaining", r)
	switch t.fields {
	case FieldsDraft7:
		h.Set("Ratelimit", "limit="+strconv.FormatInt(limit, 10)+", remaining="+r+", reset="+h.Get("X-Ratelimit-Reset"))
	case FieldsDraft:
		_, rest, _ := strings.Cut(h.Get("Ratelimit"), ", ") // other items (concurrency) stay as they were
		if rest != "" {
			rest = ", " + rest
		}
		h.Set("Ratelimit", `"credits";r=`+r+";t="+h.Get("X-Ratelimit-Reset")+rest)
	}
}

// limitFields are the fields the gateway owns; the upstream's versions are dropped so a
// client never sees two answers. The upstream's own Retry-After (say, on a 503) stays.
var limitFields = [...]string{
	"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset",
	"Ratelimit-Policy", "Ratelimit", "X-Credits-Charged",
}

// ceilSeconds is d in whole seconds, rounded up: never earlier than d.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// setPeriodFields writes the fields of a monthly plan's call refused because the period's
// calls are used up, wait before the next period starts. The credit window was not read;
// the period is what refuses the call, so it is the policy with nothing remaining until it
// ends.
func setPeriodFields(h http.Header, t *orgState, d limiter.PeriodDecision, wait time.Duration) {
	secs := strconv.FormatInt(ceilSeconds(wait), 10)
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
}
