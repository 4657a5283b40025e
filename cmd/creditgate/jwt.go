package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/creditgate/creditgate/gateway"
	"github.com/creditgate/creditgate/orgs"
)

// validateJWT checks the CREDITGATE_JWT_ variables and builds c.jwt in jwt org mode; in the
// other modes, setting one of them is an error (it would be silently ignored).
func (c *Config) validateJWT(environ map[string]string) []error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}
	if c.OrgMode != "jwt" {
		for _, name := range []string{"CREDITGATE_JWT_JWKS_URL", "CREDITGATE_JWT_JWKS_FILE", "CREDITGATE_JWT_ISSUER",
			"CREDITGATE_JWT_AUDIENCE", "CREDITGATE_JWT_DEFAULT_PLAN", "CREDITGATE_JWT_USERS_CLAIM"} {
			if environ[name] != "" {
				bad(name, "is set but CREDITGATE_ORG_MODE is %q, not jwt", c.OrgMode)
			}
		}
		return errs
	}
	if c.demo {
		bad("CREDITGATE_ORG_MODE", "jwt needs CREDITGATE_UPSTREAM_URL (the demo uses API keys)")
	}
	j := &gateway.JWTConfig{
		JWKSURL: c.JWTJWKSURL, JWKSFile: c.JWTJWKSFile, Issuer: c.JWTIssuer, Leeway: c.JWTLeeway,
		OrgClaim: c.JWTOrgClaim, UsersClaim: c.JWTUsersClaim, MaxOrgs: c.JWTMaxOrgs, CacheSize: c.JWTCacheSize,
		Refresh: c.JWTRefresh, RefetchInterval: c.JWTRefetchInterval,
	}
	switch {
	case (c.JWTJWKSURL == "") == (c.JWTJWKSFile == ""):
		bad("CREDITGATE_JWT_JWKS_URL", "or CREDITGATE_JWT_JWKS_FILE is needed in jwt org mode, not both")
	case c.JWTJWKSURL != "":
		u, err := url.Parse(c.JWTJWKSURL)
		switch {
		case err != nil || u.Host == "":
			bad("CREDITGATE_JWT_JWKS_URL", "not a valid URL: %s", showURL(c.JWTJWKSURL))
		case u.User != nil:
			bad("CREDITGATE_JWT_JWKS_URL", "must not carry credentials")
		case u.Scheme == "https":
		case u.Scheme == "http" && loopback(u.Hostname()):
		default:
			// Keys fetched in clear text could be swapped on the way: anyone could mint tokens.
			bad("CREDITGATE_JWT_JWKS_URL", "must be https:// (http:// only on loopback), got %s", showURL(c.JWTJWKSURL))
		}
	default:
		if _, err := os.Stat(c.JWTJWKSFile); err != nil {
			bad("CREDITGATE_JWT_JWKS_FILE", "%v", err)
		}
	}
	if c.JWTIssuer == "" {
		bad("CREDITGATE_JWT_ISSUER", "is needed in jwt org mode (the iss claim tokens must carry)")
	}
	for a := range strings.SplitSeq(c.JWTAudience, ",") {
		if a = strings.TrimSpace(a); a != "" {
			j.Audiences = append(j.Audiences, a)
		}
	}
	if len(j.Audiences) == 0 {
		bad("CREDITGATE_JWT_AUDIENCE", "is needed in jwt org mode (the aud values accepted, comma-separated)")
	}
	if c.JWTLeeway < 0 || c.JWTLeeway > 5*time.Minute {
		bad("CREDITGATE_JWT_LEEWAY", "must be between 0 and 5m, got %s", c.JWTLeeway)
	}
	if c.JWTOrgClaim == "" {
		bad("CREDITGATE_JWT_ORG_CLAIM", "must name a claim")
	}
	if c.JWTMaxOrgs < 1 || c.JWTMaxOrgs > 1_000_000 {
		bad("CREDITGATE_JWT_MAX_ORGS", "must be between 1 and 1000000 (each org held takes about 1 KB), got %d", c.JWTMaxOrgs)
	}
	if c.JWTCacheSize < 0 || c.JWTCacheSize > 1_000_000 {
		bad("CREDITGATE_JWT_CACHE_SIZE", "must be between 0 (no cache) and 1000000, got %d", c.JWTCacheSize)
	}
	if c.JWTCacheSize == 0 {
		j.CacheSize = -1
	}
	if c.JWTRefresh < 10*time.Second || c.JWTRefresh > 24*time.Hour {
		bad("CREDITGATE_JWT_JWKS_REFRESH", "must be between 10s and 24h, got %s", c.JWTRefresh)
	}
	if c.JWTRefetchInterval < time.Millisecond || c.JWTRefetchInterval > time.Hour {
		bad("CREDITGATE_JWT_JWKS_REFETCH_INTERVAL", "must be between 1ms and 1h, got %s", c.JWTRefetchInterval)
	}
	if c.JWTDefaultPlan != "" {
		list, err := orgs.Parse("default:" + c.JWTDefaultPlan)
		switch {
		case err != nil:
			errs = append(errs, prefixLines("CREDITGATE_JWT_DEFAULT_PLAN", err))
		case len(list) != 1:
			bad("CREDITGATE_JWT_DEFAULT_PLAN", "must be one plan's fields, such as edition=crm-standard,users=5")
		case len(list[0].Keys) > 0:
			bad("CREDITGATE_JWT_DEFAULT_PLAN", `must not list keys (orgs on it are named by their tokens)`)
		default:
			j.DefaultPlan = &list[0]
		}
	}
	c.jwt = j
	return errs
}

// jwtDefaultPlan is the default plan of jwt org mode, or nil.
func (c *Config) jwtDefaultPlan() *orgs.Org {
	if c.jwt == nil {
		return nil
	}
	return c.jwt.DefaultPlan
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
