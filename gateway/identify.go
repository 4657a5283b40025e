package gateway

import (
	"net/http"
	"strings"
)

// identify returns the calling org's tenant, or an error that writeError renders as 401.
func (g *Gateway) identify(r *http.Request) (*tenant, error) {
	ros := g.roster.Load()
	if g.cfg.Mode == OrgModeHeader {
		id := r.Header.Get(g.cfg.OrgHeader)
		if id == "" {
			return nil, errNoOrgHeader
		}
		o, ok := ros.dir.ByID(id)
		if !ok {
			return nil, errUnknownOrg
		}
		return ros.tenants[o], nil
	}

	key, ok := bearerKey(r.Header.Get("Authorization"))
	if !ok {
		key = strings.TrimSpace(r.Header.Get("X-Api-Key"))
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
