package gateway

import (
	"net/http"
	"strconv"

	"github.com/creditgate/creditgate/limiter"
)

// setLimitFields writes the rate-limit fields of SPEC §7 for decision d. It allocates twice
// whatever the decision: one string holding every number (the values are slices of it) and
// one array behind the six header values. The names are already canonical.
func setLimitFields(h http.Header, t *tenant, d limiter.Decision) {
	wait := d.Reset
	if !d.Allowed && d.RetryAfter > 0 {
		wait = d.RetryAfter // 0 for a cost above the whole limit: waiting never helps, show the reset
	}
	var buf [160]byte // room for every number at its longest
	b := strconv.AppendInt(buf[:0], d.Remaining, 10)
	nRemaining := len(b)
	b = strconv.AppendInt(b, ceilSeconds(wait), 10)
	nSecs := len(b)
	b = append(b, `"credits";r=`...)
	b = append(b, b[:nRemaining]...)
	b = append(b, ";t="...)
	b = append(b, b[nRemaining:nSecs]...)
	nField := len(b)
	b = strconv.AppendInt(b, d.Cost, 10)
	s := string(b)

	v := make([]string, 6)
	v[0], v[1], v[2] = t.limit, s[:nRemaining], s[nRemaining:nSecs]
	v[3], v[4], v[5] = t.policy, s[nSecs:nField], s[nField:]
	h["X-Ratelimit-Limit"] = v[0:1:1]
	h["X-Ratelimit-Remaining"] = v[1:2:2]
	h["X-Ratelimit-Reset"] = v[2:3:3]
	h["Ratelimit-Policy"] = v[3:4:4]
	h["Ratelimit"] = v[4:5:5]
	h["X-Credits-Charged"] = v[5:6:6]
}
