package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

// Request outcomes that become error responses. writeError maps each to its status and body.
var (
	errNoCredential      = errors.New("no credential")
	errUnknownCredential = errors.New("unknown credential")
	errNoOrgHeader       = errors.New("no org header")
	errUnknownOrg        = errors.New("unknown org")
	errStoreUnavailable  = errors.New("credit store unavailable")
	errUpstreamTimeout   = errors.New("upstream timeout")
	errUpstream          = errors.New("upstream unreachable")
	errClientBody        = errors.New("request body unreadable")
	errBadExplain        = errors.New("bad explain request")
	errTwoCredentials    = errors.New("more than one credential")
	errTwoOrgs           = errors.New("more than one org named")
	errMethodOverride    = errors.New("too many method overrides")
	errPreflightRate     = errors.New("too many preflights")
	errNoRoute           = errors.New("no route")
)

// tooManyRequestsBody is the exact body of the 429, byte for byte (README "The refused call").
var tooManyRequestsBody = []byte(`{"code":"TOO_MANY_REQUESTS","details":{},"message":"Many requests fired than the allowed limit for the past 24 hours.","status":"error"}`)

// overLimitError is the 429 of a window other than 24 hours: its message names the window.
type overLimitError struct{ body []byte }

func (e *overLimitError) Error() string { return limiter.ErrOverLimit.Error() }
func (e *overLimitError) Unwrap() error { return limiter.ErrOverLimit }

// newOverLimitError returns the 429 of window: the exact body for 24 hours, and the same
// sentence naming the window otherwise ("the past 10 minutes").
func newOverLimitError(window time.Duration) *overLimitError {
	if window == 24*time.Hour {
		return &overLimitError{body: tooManyRequestsBody}
	}
	b, _ := json.Marshal(errorBody{Code: "TOO_MANY_REQUESTS", Details: map[string]any{}, Status: "error",
		Message: "Many requests fired than the allowed limit for the past " + windowPhrase(window) + "."})
	return &overLimitError{body: b}
}

// windowPhrase says a window in words: "24 hours", "1 hour", "90 seconds", "1500 milliseconds".
func windowPhrase(d time.Duration) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(n, 10) + " " + one + "s"
	}
	switch {
	case d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	case d%time.Second == 0:
		return unit(int64(d/time.Second), "second")
	}
	return unit(d.Milliseconds(), "millisecond")
}

// errorBody is the one JSON shape of every error the gateway answers itself. Fields are in
// alphabetical order, as in the 429 body.
type errorBody struct {
	Code    string         `json:"code"`
	Details map[string]any `json:"details"`
	Message string         `json:"message"`
	Status  string         `json:"status"`
}

// bodyTooLargeError is a body that must be counted but is over CREDITGATE_MAX_BODY_BYTES,
// as sent or (decoded) once its content coding is removed, or that decodes to more than
// ratio times its size.
type bodyTooLargeError struct {
	max     int64
	decoded bool
	ratio   int64
}

func (e *bodyTooLargeError) Error() string {
	if e.decoded {
		return fmt.Sprintf("decoded body over %d bytes or %d times its size", e.max, e.ratio)
	}
	return fmt.Sprintf("body over %d bytes", e.max)
}

// concurrencyError is a call refused because the org has too many calls in flight.
type concurrencyError struct {
	limit int64
	scope string // "org" or "heavy"
}

func (e *concurrencyError) Error() string { return "too many calls in flight" }

// explainError is a malformed explain request; msg is safe to show.
type explainError struct{ msg string }

func (e *explainError) Error() string { return e.msg }
func (e *explainError) Unwrap() error { return errBadExplain }

// costError carries the numbers of a call that costs more than the org's whole limit.
type costError struct {
	cost, limit int64
}

func (e *costError) Error() string { return limiter.ErrCostExceedsLimit.Error() }
func (e *costError) Unwrap() error { return limiter.ErrCostExceedsLimit }

// writeError is the only code that writes an error body. retryAfter (seconds) is sent as
// Retry-After when positive.
func writeError(w http.ResponseWriter, err error, retryAfter int64) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(retryAfter, 10))
	}
	if errors.Is(err, limiter.ErrOverLimit) {
		w.WriteHeader(http.StatusTooManyRequests)
		var ol *overLimitError
		if errors.As(err, &ol) {
			_, _ = w.Write(ol.body)
		} else {
			_, _ = w.Write(tooManyRequestsBody)
		}
		return
	}
	var te *tokenError
	if errors.As(err, &te) {
		if c := te.challenge(); c != "" {
			h.Set("WWW-Authenticate", c) // RFC 6750 §3
		}
	}
	status, body := errorResponse(err)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(body)
}

// errorKinds maps each outcome to its status, code and message. Messages never carry
// request data: errors reach logs and clients alike.
var errorKinds = []struct {
	err     error
	status  int
	code    string
	message string
}{
	{errNoCredential, http.StatusUnauthorized, "AUTHENTICATION_FAILURE",
		"No API key: send Authorization: Bearer <key>, Authorization: Zoho-oauthtoken <key> or X-Api-Key: <key>."},
	{errUnknownCredential, http.StatusUnauthorized, "INVALID_TOKEN", "The API key is not valid."},
	{errNoOrgHeader, http.StatusUnauthorized, "AUTHENTICATION_FAILURE", "The request does not name an org."},
	{errUnknownOrg, http.StatusUnauthorized, "INVALID_TOKEN", "The org is not known."},
	{errStoreUnavailable, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "Credits cannot be checked right now; try again shortly."},
	{errClientBody, http.StatusBadRequest, "INVALID_REQUEST", "The request body could not be read in full."},
	{errTwoCredentials, http.StatusUnauthorized, "INVALID_TOKEN",
		"The request carries more than one API key (Authorization and X-Api-Key name different keys, or one of them is given twice with different values); send exactly one."},
	{errTwoOrgs, http.StatusUnauthorized, "AUTHENTICATION_FAILURE", "The request names more than one org."},
	{errMethodOverride, http.StatusBadRequest, "INVALID_REQUEST", "The request names too many methods in method override headers."},
	{errNoRoute, http.StatusNotFound, "ROUTE_NOT_FOUND", "No API is served at this host and path through the gateway; nothing was charged."},
	{errPreflightRate, http.StatusTooManyRequests, "TOO_MANY_REQUESTS", "Too many CORS preflights through the gateway right now; try again shortly."},
	{errBodyBudget, http.StatusServiceUnavailable, "BODY_BUFFER_FULL",
		"The gateway holds as many request bodies as it may right now; try again shortly. Nothing was charged."},
	{errNoAdminToken, http.StatusUnauthorized, "AUTHENTICATION_FAILURE", "No admin token: send Authorization: Bearer <token>."},
	{errBadAdminToken, http.StatusUnauthorized, "INVALID_TOKEN", "The admin token is not valid."},
	{errForbidden, http.StatusForbidden, "NO_PERMISSION", "This token's role may not do this."},
	{errUpstreamTimeout, http.StatusGatewayTimeout, "GATEWAY_TIMEOUT", "The API did not answer in time; no credits were charged."},
	{errUpstream, http.StatusBadGateway, "BAD_GATEWAY", "The API could not be reached; no credits were charged."},
	{errOrgNotFound, http.StatusNotFound, "NOT_FOUND", "No org with this ID."},
	{errNoUsage, http.StatusNotImplemented, "NOT_SUPPORTED", "The credit store cannot report usage."},
	{errMethodNotAllowed, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "This method is not allowed here."},
	{errRouteNotFound, http.StatusNotFound, "NOT_FOUND", "Nothing is served at this path."},
}

func errorResponse(err error) (int, errorBody) {
	b := errorBody{Details: map[string]any{}, Status: "error"}
	var (
		ce *costError
		be *bodyTooLargeError
		xe *explainError
	)
	if errors.As(err, &be) {
		b.Code = "REQUEST_ENTITY_TOO_LARGE"
		b.Message = "The request body is larger than the gateway counts records in; nothing was charged."
		b.Details["max_bytes"] = be.max
		if be.decoded {
			b.Message = "The request body, decompressed, is larger than the gateway counts records in; nothing was charged."
			if be.ratio > 0 {
				b.Details["max_inflate_ratio"] = be.ratio
			}
		}
		return http.StatusRequestEntityTooLarge, b
	}
	var te *tokenError
	if errors.As(err, &te) {
		return te.fill(&b), b
	}
	var ae *apiError
	if errors.As(err, &ae) {
		b.Code, b.Message = ae.code, ae.msg
		for k, v := range ae.details {
			b.Details[k] = v
		}
		return ae.status, b
	}
	var cc *concurrencyError
	if errors.As(err, &cc) {
		b.Code = "TOO_MANY_REQUESTS"
		b.Message = fmt.Sprintf("Too many requests in flight: at most %d concurrent requests are allowed for this org.", cc.limit)
		if cc.scope == "heavy" {
			b.Message = fmt.Sprintf("Too many bulk and multi-record requests in flight: at most %d at a time are allowed for this org.", cc.limit)
		}
		b.Details["concurrency_limit"] = cc.limit
		b.Details["scope"] = cc.scope
		return http.StatusTooManyRequests, b
	}
	if errors.As(err, &xe) {
		b.Code = "INVALID_DATA"
		b.Message = xe.msg
		return http.StatusBadRequest, b
	}
	if errors.As(err, &ce) {
		b.Code = "COST_EXCEEDS_LIMIT"
		b.Message = "This call costs more credits than the whole limit of the window; it can never succeed."
		b.Details["cost"] = ce.cost
		b.Details["limit"] = ce.limit
		// Not 429: retry clients (go-retryablehttp's default policy, among others) retry every
		// 429, and this call can never succeed.
		return http.StatusUnprocessableEntity, b
	}
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			b.Code, b.Message = k.code, k.message
			return k.status, b
		}
	}
	b.Code, b.Message = "INTERNAL_ERROR", "Internal error."
	return http.StatusInternalServerError, b
}
