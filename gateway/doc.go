// Package gateway is creditgate's HTTP side: it identifies the calling org, prices the call
// with a cost table, debits the org's rolling window, and forwards the call with
// httputil.ReverseProxy, answering 401, 429, 502/503/504 itself as JSON with one error shape.
//
// Every response to an identified org carries X-RateLimit-Limit, X-RateLimit-Remaining,
// X-RateLimit-Reset, the IETF draft RateLimit-Policy and RateLimit fields, and
// X-Credits-Charged. When the gateway itself cannot reach the upstream it refunds the call;
// any answer of the upstream, whatever its status, keeps the charge.
//
// Metrics (NewMetrics, served by NewAdminHandler at /metrics) count every call once, by org,
// outcome and reason, with series resolved at load time so counting allocates nothing. A
// circuit breaker sits at the gateway's calls to the store: once the store is known dead,
// calls skip it and the fail mode answers at once, and a background probe brings it back.
//
// What a call costs is package costtable's business, who may call is package orgs', and the
// window arithmetic is package limiter's; this package only wires them into HTTP.
package gateway
