// Package gateway is creditgate's HTTP side: it identifies the calling org, prices the call
// with a cost table, debits the org's rolling window, and forwards the call with
// httputil.ReverseProxy, answering 401, 429, 502/503/504 itself as JSON with one error shape.
//
// Every response to an identified org carries X-RateLimit-Limit, X-RateLimit-Remaining,
// X-RateLimit-Reset, the IETF draft RateLimit-Policy and RateLimit fields, and
// X-Credits-Charged. When the gateway itself cannot reach the upstream it refunds the call;
// any answer of the upstream, whatever its status, keeps the charge.
//
// What a call costs is package costtable's business, who may call is package orgs', and the
// window arithmetic is package limiter's; this package only wires them into HTTP.
package gateway
