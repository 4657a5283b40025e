package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/creditgate/creditgate/orgs"
)

// Role is what an admin token may do. Higher roles include the lower ones.
type Role int

// Roles of CREDITGATE_ADMIN_TOKENS.
const (
	RoleViewer     Role = iota + 1 // reads usage, billing, quotes, explain
	RoleAdmin                      // also changes add-on limits
	RoleSuperAdmin                 // everything an admin can, reserved for operators
)

var roleNames = map[string]Role{"viewer": RoleViewer, "admin": RoleAdmin, "super-admin": RoleSuperAdmin}

// String returns the role's configuration name.
func (r Role) String() string {
	for name, role := range roleNames {
		if role == r {
			return name
		}
	}
	return "none"
}

// AdminTokens holds the admin API's bearer tokens, as SHA-256 digests only.
type AdminTokens struct {
	tokens []adminToken
}

type adminToken struct {
	key  orgs.Key
	role Role
}

var (
	errNoAdminToken  = errors.New("no admin token")
	errBadAdminToken = errors.New("unknown admin token")
	errForbidden     = errors.New("role not allowed")
)

// ParseAdminTokens reads CREDITGATE_ADMIN_TOKENS: `role:token` pairs separated by ';', roles
// super-admin, admin and viewer, tokens plain or sha256:<hex>. Errors name the entry by
// position and never quote a token.
func ParseAdminTokens(s string) (*AdminTokens, error) {
	a := &AdminTokens{}
	var errs []error
	for i, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, token, ok := strings.Cut(entry, ":")
		name, token = strings.TrimSpace(name), strings.TrimSpace(token)
		role, known := roleNames[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("entry %d: want role:token", i+1))
			continue
		case !known:
			errs = append(errs, fmt.Errorf("entry %d: unknown role (want super-admin, admin or viewer)", i+1))
			continue
		}
		key, err := orgs.ParseKey(token)
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %d (%s): %w", i+1, name, err))
			continue
		}
		for _, t := range a.tokens {
			if t.key == key {
				errs = append(errs, fmt.Errorf("entry %d (%s): the same token is listed twice", i+1, name))
			}
		}
		a.tokens = append(a.tokens, adminToken{key: key, role: role})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// Len returns the number of tokens.
func (a *AdminTokens) Len() int {
	if a == nil {
		return 0
	}
	return len(a.tokens)
}

// authorize checks the request's bearer token against every configured token (all of them,
// each in constant time, so timing tells nothing) and requires at least role min.
func (a *AdminTokens) authorize(r *http.Request, min Role) error {
	token, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		return errNoAdminToken
	}
	var role Role
	if a != nil {
		for _, t := range a.tokens {
			if t.key.Matches(token) && t.role > role {
				role = t.role
			}
		}
	}
	switch {
	case role == 0:
		return errBadAdminToken
	case role < min:
		return errForbidden
	}
	return nil
}

func bearerToken(v string) (string, bool) {
	scheme, token, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
