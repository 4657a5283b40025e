package gateway

import (
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"
)

// forward hands the call to its route's proxy, with its state in a pooled callWriter for
// the proxy's error hook (proxyError), which refunds a call the upstream never served.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, st callState) {
	cw := callWriters.Get().(*callWriter)
	cw.ResponseWriter, cw.st = w, st
	cw.hold()
	cw.st.sent = time.Now()
	if r.Body != nil && r.Body != http.NoBody {
		// Not pooled: the transport may still read a body after the proxy returns.
		cw.st.body = &watchedBody{ReadCloser: r.Body}
		r.Body = cw.st.body
	}
	var s *settling
	if st.settle != nil && st.d.Allowed {
		s, r = g.startSettle(cw, r) // settle.go
		defer s.end()               // also when the proxy panics (a client gone mid-answer)
	}
	if replayable(r) {
		r = withAttempts(r, &cw.att) // one upstream attempt at most (see upstream.go)
	}
	st.route.proxy.ServeHTTP(cw, r)
	if s != nil {
		s.end() // before cw goes back to the pool
	}
	*cw = callWriter{}
	callWriters.Put(cw)
}

func (g *Gateway) rewrite(rt *route, pr *httputil.ProxyRequest) {
	pr.SetURL(rt.Upstream)
	if rt.PreserveHost {
		pr.Out.Host = pr.In.Host
	}
	// ReverseProxy drops the query parameters it cannot parse (';', bad escapes) before
	// Rewrite; the call was priced on the query as sent, so that is what goes upstream.
	if q := pr.In.URL.RawQuery; q != "" {
		if t := rt.Upstream.RawQuery; t != "" {
			q = t + "&" + q
		}
		pr.Out.URL.RawQuery = q
	}
	// Keep the chain of a load balancer in front; SetXForwarded appends our hop. RFC 7239's
	// Forwarded, which ReverseProxy drops too, is kept and extended the same way.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetXForwarded()
	if fwd := pr.In.Header["Forwarded"]; len(fwd) > 0 {
		pr.Out.Header["Forwarded"] = append(fwd[:len(fwd):len(fwd)], forwardedElement(pr.In))
	}
	if s := settlingOf(rt, pr.Out); s != nil && s.rule.Header == "" {
		readableCodings(pr.Out.Header) // settle.go
		// A part of an answer cannot be counted: a client could fetch a long list in ranges,
		// each keeping only its reservation. A counted call gets its answer whole.
		delete(pr.Out.Header, "Range")
		delete(pr.Out.Header, "If-Range")
	}
	if g.cfg.StripCredentials && g.cfg.Mode == OrgModeAPIKey {
		if _, ok := bearerKey(pr.Out.Header.Get("Authorization")); ok {
			deleteAliases(pr.Out.Header, "Authorization")
		}
		deleteAliases(pr.Out.Header, "X-Api-Key")
	}
}

// forwardedElement is this hop's element of an RFC 7239 Forwarded field: the client's
// address, the host it asked for and the protocol.
func forwardedElement(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6, quoted below
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	return `for="` + host + `";host=` + strconv.Quote(r.Host) + ";proto=" + proto
}

// modifyResponse measures the upstream's answer and drops its limit fields; a call that
// settles its cost from the answer reads it (settle.go).
func (g *Gateway) modifyResponse(rt *route, resp *http.Response) error {
	if s := settlingOf(rt, resp.Request); s != nil {
		s.response(resp)
	}
	g.rewriteLocations(rt, resp)
	if g.cors != nil {
		g.cors.dropUpstream(resp.Header) // the gateway's are on the answer already
	}
	return dropUpstreamLimitFields(resp)
}

// rewriteLocations points the upstream's own absolute URLs in Location, Content-Location and
// Refresh back at the address the client used (as nginx's default proxy_redirect does): the
// upstream, seeing its own Host, answers with its own address, and a client following it
// would leave the gateway (and its credits) behind.
func (g *Gateway) rewriteLocations(rt *route, resp *http.Response) {
	h := resp.Header
	_, loc := h["Location"]
	_, cloc := h["Content-Location"]
	_, ref := h["Refresh"]
	if !loc && !cloc && !ref || resp.Request == nil {
		return
	}
	out := resp.Request
	host := out.Header.Get("X-Forwarded-Host") // the Host the client asked for
	proto := out.Header.Get("X-Forwarded-Proto")
	if host == "" || proto == "" {
		return
	}
	from, to := rt.from, proto+"://"+host
	if rt.StripPrefix {
		to += rt.prefix // the upstream's paths are the route's, less its prefix
	}
	upPath := strings.TrimSuffix(rt.Upstream.Path, "/")
	rewrite := func(v string) string {
		if rt.StripPrefix && strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "//") {
			// Root-relative: a path of the upstream's, which the client reaches under the
			// route's prefix.
			if rest, ok := strings.CutPrefix(v, upPath); ok && (rest == "" || strings.ContainsRune("/?#", rune(rest[0]))) {
				return rt.prefix + rest
			}
			return v
		}
		if len(v) < len(from) || !strings.EqualFold(v[:len(from)], from) {
			return v
		}
		if rest := v[len(from):]; rest == "" || rest[0] == '/' || rest[0] == '?' || rest[0] == '#' {
			return to + rest
		}
		return v
	}
	for _, k := range [...]string{"Location", "Content-Location"} {
		if v := h.Get(k); v != "" {
			h.Set(k, rewrite(v))
		}
	}
	if v := h.Get("Refresh"); v != "" { // "5; url=http://…"
		if i := strings.Index(strings.ToLower(v), "url="); i >= 0 {
			h.Set("Refresh", v[:i+4]+rewrite(v[i+4:]))
		}
	}
}

func dropUpstreamLimitFields(resp *http.Response) error {
	for _, k := range limitFields {
		delete(resp.Header, k)
	}
	return nil
}
