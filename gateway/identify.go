package gateway

import (
	"net/http"
	"strings"
)

// identify returns the calling org's state, or an error that writeError renders as 401.
//
// A call must name one org, once: the upstream reads its own copy of the headers, and may
// take another of two differing values (the last, or the other header) than the gateway
// charged. So two different API keys (in apikey mode) or two different org ids (in header
// mode) are refused; the same one twice is fine.
//
// underscored says whether r has header names with '_' (see hasUnderscoreName).
func (g *Gateway) identify(r *http.Request, underscored bool) (*orgState, error) {
	if g.cfg.Mode == OrgModeJWT {
		return g.identifyJWT(r, underscored)
	}
	ros := g.orgs.Load()
	if g.cfg.Mode == OrgModeHeader {
		ids := r.Header[g.orgHeader]
		if underscored {
			ids = aliasValues(r.Header, g.orgHeader)
		}
		id, err := one(ids)
		if err != nil {
			return nil, errTwoOrgs
		}
		if id == "" {
			return nil, errNoOrgHeader
		}
		t, ok := g.stateByID(ros, id)
		if !ok {
			return nil, errUnknownOrg
		}
		return t, nil
	}

	key, err := credential(r.Header, underscored)
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, errNoCredential
	}
	i, ok := ros.dir.IndexByKey(key)
	if !ok {
		return nil, errUnknownCredential
	}
	return g.state(ros, i), nil
}

// credential returns the one API key h names: in Authorization (Bearer or Zoho-oauthtoken)
// or X-Api-Key, each possibly given more than once, and under names that servers such as
// PHP's or Python's WSGI read as the same header (X_Api_Key). It fails with
// errTwoCredentials when they name different keys, or when Authorization is given twice
// with different values (whatever its scheme). An Authorization of another scheme (Basic,
// say) beside X-Api-Key is the upstream's affair and is left alone.
func credential(h http.Header, underscored bool) (string, error) {
	a, err := authorization(h, underscored)
	if err != nil {
		return "", errTwoCredentials
	}
	xkey := h["X-Api-Key"]
	if underscored {
		xkey = aliasValues(h, "X-Api-Key")
	}
	key, _ := bearerKey(a)
	for _, v := range xkey {
		switch v = strings.TrimSpace(v); {
		case v == "" || v == key:
		case key == "":
			key = v
		default:
			return "", errTwoCredentials
		}
	}
	return key, nil
}

// authorization returns the one value of Authorization in h, under its aliases too when
// underscored; an error when it is given twice with different values.
func authorization(h http.Header, underscored bool) (string, error) {
	if underscored {
		return one(aliasValues(h, "Authorization"))
	}
	return one(h["Authorization"])
}

// one returns the value of a header given as vs, which may repeat it: "" for none, an error
// when two values differ (ignoring surrounding spaces).
func one(vs []string) (string, error) {
	if len(vs) == 0 {
		return "", nil
	}
	v := strings.TrimSpace(vs[0])
	for _, o := range vs[1:] {
		if strings.TrimSpace(o) != v {
			return "", errTwoCredentials
		}
	}
	return v, nil
}

// hasUnderscoreName reports whether a header name of h has a '_'. Servers that pass headers
// to programs as variables (CGI, PHP, Python's WSGI) read '_' and '-' alike, so X_Api_Key
// may be their X-Api-Key: such names are read as aliases of the headers the gateway acts on.
func hasUnderscoreName(h http.Header) bool {
	for name := range h {
		if strings.IndexByte(name, '_') >= 0 {
			return true
		}
	}
	return false
}

// aliasValues returns the values of the canonical header name and of every name that reads
// as it with '_' for '-' (X_API_KEY for X-Api-Key).
func aliasValues(h http.Header, name string) []string {
	vs := h[name]
	for k, more := range h {
		if k != name && strings.IndexByte(k, '_') >= 0 && sameHeaderName(k, name) {
			vs = append(vs[:len(vs):len(vs)], more...)
		}
	}
	return vs
}

// deleteAliases removes the header name and every alias of it (see aliasValues).
func deleteAliases(h http.Header, name string) {
	delete(h, name)
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 && sameHeaderName(k, name) {
			delete(h, k)
		}
	}
}

// sameHeaderName reports whether name, with '_' read as '-', is canonical, ignoring ASCII
// case.
func sameHeaderName(name, canonical string) bool {
	if len(name) != len(canonical) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' {
			c = '-'
		}
		if lower(c) != lower(canonical[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// bearerKey returns the key of an "Authorization: Bearer <key>" or
// "Authorization: Zoho-oauthtoken <key>" value; schemes are case-insensitive (RFC 9110 §11.1).
func bearerKey(v string) (string, bool) {
	// RFC 9110 separates scheme and token with spaces; lenient servers take tabs too.
	i := strings.IndexAny(v, " \t")
	if i < 0 {
		return "", false
	}
	scheme, key := v[:i], v[i+1:]
	if !strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "Zoho-oauthtoken") {
		return "", false
	}
	key = strings.TrimSpace(key)
	return key, key != ""
}
