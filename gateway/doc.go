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
// # The request path
//
// Gateway.ServeHTTP (serve.go) runs a call through named steps, each in its own file:
// identify (identify.go: which org), routeCall and charge (pricing.go: where it goes, what
// it costs), countPeriod (period.go: monthly plans), readBody (body.go: a body whose records
// are counted), debit (admit.go: the org's window), forward (forward.go), and refund.go for a
// call the upstream never served. A step that will not let a call go on builds a refusal
// (refusal.go); pass alone decides, with shadow mode and the fail mode, whether it goes on
// uncharged or is answered, and counts, logs and answers it.
//
// The credit store is the Store contract (store.go), declared here; the breaker (breaker.go)
// and the queue of store calls waiting for it (deferred.go) sit in front of it. The response
// fields are written in fields.go, and the admin listener's routes are one table (admin.go).
//
// What a call costs is package costtable's business, who may call is package orgs', what an
// org's plan allows is package plans', and the window arithmetic is package limiter's; this
// package only wires them into HTTP.
package gateway
