package gateway

import (
	"net/http"
	"strings"
)

// identify returns the calling org's tenant, or an error that writeError renders as 401.
//
// A call must name one org, once: the upstream reads its own copy of the headers, and may
// take another of two differing values (the last, or the other header) than the gateway
// charged. So two different API keys (in apikey mode) or two different org ids (in header
// mode) are refused; the same one twice is fine.
func (g *Gateway) identify(r *http.Request) (*tenant, error) {
	ros := g.roster.Load()
	if g.cfg.Mode == OrgModeHeader {
		id, err := one(r.Header[g.orgHeader])
		if err != nil {
			return nil, errTwoOrgs
		}
		if id == "" {
			return nil, errNoOrgHeader
		}
		o, ok := ros.dir.ByID(id)
		if !ok {
			return nil, errUnknownOrg
		}
		return ros.tenants[o], nil
	}

	key, err := credential(r.Header)
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, errNoCredential
	}
	o, ok := ros.dir.ByKey(key)
	if !ok {
		return nil, errUnknownCredential
	}
	return ros.tenants[o], nil
}

// credential returns the one API key h names: in Authorization (Bearer or Zoho-oauthtoken)
// or X-Api-Key, each possibly given more than once, and under names that servers such as
// PHP's or Python's WSGI read as the same header (X_Api_Key). It fails with
// errTwoCredentials when they name different keys, or when Authorization is given twice
// with different values (whatever its scheme). An Authorization of another scheme (Basic,
// say) beside X-Api-Key is the upstream's affair and is left alone.
func credential(h http.Header) (string, error) {
	auth, xkey := h["Authorization"], h["X-Api-Key"]
	if len(h) > 2 {
		for name, vs := range h {
			if !strings.Contains(name, "_") {
				continue
			}
			switch {
			case sameHeaderName(name, "authorization"):
				auth = append(auth[:len(auth):len(auth)], vs...)
			case sameHeaderName(name, "x-api-key"):
				xkey = append(xkey[:len(xkey):len(xkey)], vs...)
			}
		}
	}
	a, err := one(auth)
	if err != nil {
		return "", errTwoCredentials
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

// sameHeaderName reports whether name, with '_' read as '-', is lower (a lower-case header
// name), ignoring ASCII case.
func sameHeaderName(name, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// bearerKey returns the key of an "Authorization: Bearer <key>" or
// "Authorization: Zoho-oauthtoken <key>" value; schemes are case-insensitive (RFC 9110 §11.1).
func bearerKey(v string) (string, bool) {
	scheme, key, ok := strings.Cut(v, " ")
	if !ok {
		return "", false
	}
	if !strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "Zoho-oauthtoken") {
		return "", false
	}
	key = strings.TrimSpace(key)
	return key, key != ""
}
