// Package costtable knows what an API call costs in credits. What an org's plan allots, and
// what add-on credits cost, is package plans' business.
//
// # Cost tables
//
// A Table is a compiled, immutable list of rules, safe for concurrent use. Table.Match
// classifies a request by method, path and query string and returns the Rule that prices it.
// Every table has a fallback rule, so every request has a price. Match classifies only and
// never reads a body; Rule.Charge then prices the call: Rule.Cost for a fixed-cost rule, or
// ceil(records/Per) for a per-record rule (see Records and files below).
//
// Builtin returns the tables that ship with creditgate ("zoho-crm", the default). New compiles
// any other table and reports every problem at once, each naming its rule.
//
// # Path templates
//
// A template is a "/"-separated list of segments. Each segment is one of:
//
//	deleted           a literal, matched ASCII case-insensitively
//	{id}              a parameter: exactly one non-empty segment
//	{version:v2|v3}   a constrained parameter: one segment equal to one of the alternatives,
//	                  matched ASCII case-insensitively
//	*                 the last segment only: zero or more remaining segments
//
// Parameter names only document the template; they are not captured. Empty segments are
// ignored, in templates and in requests, so "/crm/v2/Leads/" and "/crm//v2/Leads" both match
// "/crm/{version}/{module}".
//
// # Requests
//
// Match takes the decoded request path (http.Request.URL.Path). It resolves "." and ".."
// segments the way path.Clean does, so "/crm/bulk/v2/write/x/.." is priced as a bulk write,
// and it cuts ";params" off each segment as servlet containers do before routing, so
// "/crm/bulk/v2/write;x=1" is a bulk write too and "..;" resolves as "..".
// It does not decode percent-escapes: a caller that passes an escaped path gets an escaped
// path matched. Methods compare ASCII case-insensitively, and an empty method means GET, as in
// net/http. A rule's query condition holds when the raw query string has the parameter with a
// non-empty value ("cvid=12"; not "cvid" or "cvid="). The name is compared as an upstream may
// read it, so that no spelling makes a call look cheaper: percent-escapes and '+' decoded
// ("c%76id=12" is cvid), '&' and ';' both separating pairs, case ignored as encoding/json
// ignores it in keys ("CVID=12"), and the bracketed list forms "cvid[]=12" and "cvid[0]=12"
// counting as cvid.
//
// # Precedence
//
// The most specific rule wins, whatever the order of the rules:
//
//  1. Segment by segment from the left: a literal beats a constrained parameter, which beats
//     a parameter, which beats "*". Among constrained parameters, the one with fewer
//     alternatives is tried first. When the more specific choice fails further right, the
//     next one is tried. So GET /crm/v2/users/deleted is priced by "/crm/{version}/users/{id}"
//     rather than "/crm/{version}/{module}/deleted", while GET /crm/v2/settings/deleted, which
//     no "/crm/{version}/settings/..." rule matches, is priced by the latter.
//  2. Among rules with the same template, a rule whose query condition holds beats a rule
//     without one (a rule whose condition fails does not match at all).
//  3. Then a rule for the exact method beats a rule for "*".
//  4. Otherwise the fallback.
//
// Two rules with the same method, template (up to parameter names, letter case and the order
// of alternatives) and query condition are rejected by New: the second could never match.
//
// # Records and files
//
// Rule.Charge prices a call: a fixed cost, or ceil(records/Per) with records counted by
// CountJSONArray (one validating pass over a buffered body, no allocation, nesting up to 10,000
// levels) or CountQueryList. Parse and LoadFile compile a table from YAML or JSON, naming the
// line and the rule of every problem.
//
// # Left to others
//
// The package keeps no state, talks to no network, reads no environment and does not log.
// Buffering bodies, swapping tables on reload, debiting the window (package limiter),
// enforcing concurrency caps and serving the explain endpoint (package gateway) belong to the
// callers.
package costtable
