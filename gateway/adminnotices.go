package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"

	"go.uber.org/zap"

	"github.com/creditgate/creditgate/limiter"
)

var errNoNotices = &apiError{status: http.StatusNotImplemented, code: "NOT_SUPPORTED",
	msg: "The credit store does not keep usage notices."}

// noticesResponse is the body of the notices endpoints: an org's notice settings in force,
// where each comes from, and its thresholds armed and fired. The secret is never shown.
type noticesResponse struct {
	Org        string  `json:"org"`
	Thresholds []int64 `json:"thresholds"`
	Armed      []int64 `json:"armed"`
	Fired      []int64 `json:"fired"`
	// WebhookURL is the endpoint without its query and credentials; "" when none.
	WebhookURL       string `json:"webhook_url"`
	WebhookSecretSet bool   `json:"webhook_secret_set"`
	// ThresholdsFrom and WebhookFrom say where each setting comes from: "admin" (this API),
	// "org" (the orgs file), "default" (the environment) or "none".
	ThresholdsFrom string `json:"thresholds_from"`
	WebhookFrom    string `json:"webhook_from"`
}

// usageNotices is the notices part of the usage body.
type usageNotices struct {
	Thresholds []int64 `json:"thresholds"`
	Armed      []int64 `json:"armed"`
	Fired      []int64 `json:"fired"`
}

// noticesOf returns t's notice settings in force given what the store holds.
func (g *Gateway) noticesOf(t *orgState, st limiter.NoticeState) noticesResponse {
	r := noticesResponse{Org: t.org.ID, Thresholds: []int64{}, Armed: []int64{}, Fired: []int64{}, ThresholdsFrom: "none", WebhookFrom: "none"}
	cfg := g.notices.cfg
	switch {
	case st.Settings.Thresholds != nil:
		r.Thresholds, r.ThresholdsFrom = *st.Settings.Thresholds, "admin"
	case t.org.HasNotify:
		r.Thresholds, r.ThresholdsFrom = t.org.NotifyThresholds, "org"
	case len(cfg.Thresholds) > 0:
		r.Thresholds, r.ThresholdsFrom = cfg.Thresholds, "default"
	}
	u, secret := "", ""
	switch {
	case st.Settings.URL != nil:
		u, r.WebhookFrom = *st.Settings.URL, "admin"
		if st.Settings.Secret != nil {
			secret = *st.Settings.Secret
		}
	case t.org.WebhookURL != "":
		u, secret, r.WebhookFrom = t.org.WebhookURL, t.org.WebhookSecret, "org"
	case cfg.URL != "":
		u, secret, r.WebhookFrom = cfg.URL, cfg.Secret, "default"
	}
	if pu, err := url.Parse(u); err == nil && u != "" {
		// Scheme and host only: hooks of chat and automation services carry their token in
		// the path, and a viewer is not to read it.
		r.WebhookURL = pu.Scheme + "://" + pu.Host
		if pu.Path != "" && pu.Path != "/" {
			r.WebhookURL += "/…"
		}
	}
	r.WebhookSecretSet = secret != ""
	r.Fired = append(r.Fired, st.Fired...)
	for _, p := range r.Thresholds {
		if !slices.Contains(st.Fired, p) {
			r.Armed = append(r.Armed, p)
		}
	}
	return r
}

// readNotices reads t's notice state, answering the error itself when it cannot.
func (g *Gateway) readNotices(w http.ResponseWriter, r *http.Request, t *orgState) (limiter.NoticeState, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.StoreTimeout)
	defer cancel()
	st, err := g.cfg.Store.Notices(ctx, t.org.ID)
	if err != nil {
		g.log.Error("notices not read", zap.String("org", t.org.ID), zap.Error(err))
		writeError(w, errStoreUnavailable, 1)
		return st, false
	}
	return st, true
}

// noticesTarget returns the org of a notices call, answering the error itself when there is
// none or the store keeps no notices.
func (g *Gateway) noticesTarget(w http.ResponseWriter, r *http.Request) (*orgState, bool) {
	if g.notices == nil {
		writeError(w, errNoNotices, 0)
		return nil, false
	}
	t, err := g.tenantByID(r)
	if err != nil {
		writeError(w, err, 0)
		return nil, false
	}
	return t, true
}

// getNotices answers GET /admin/v1/orgs/{org}/notices.
func (g *Gateway) getNotices(w http.ResponseWriter, r *http.Request) {
	t, ok := g.noticesTarget(w, r)
	if !ok {
		return
	}
	if st, ok := g.readNotices(w, r, t); ok {
		writeJSON(w, g.noticesOf(t, st))
	}
}

// noticesRequest is the body of PUT /admin/v1/orgs/{org}/notices: each field given replaces
// the configured one for the org; those left out keep it.
type noticesRequest struct {
	Thresholds    *[]int64 `json:"thresholds"`
	WebhookURL    *string  `json:"webhook_url"`
	WebhookSecret *string  `json:"webhook_secret"`
}

// exactFields checks that raw is one JSON object whose fields are among known, each given
// once and spelt exactly (encoding/json would match "THRESHOLDS" too, and keep the last of
// two).
func exactFields(raw []byte, known ...string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("not an object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		if err != nil || !ok || !slices.Contains(known, name) || seen[name] {
			return errors.New("unknown or repeated field")
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more after the object")
	}
	return nil
}

// putNotices answers PUT /admin/v1/orgs/{org}/notices.
func (g *Gateway) putNotices(w http.ResponseWriter, r *http.Request) {
	t, ok := g.noticesTarget(w, r)
	if !ok {
		return
	}
	var req noticesRequest
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<10))
	if err == nil {
		err = exactFields(raw, "thresholds", "webhook_url", "webhook_secret")
	}
	if err == nil {
		err = json.Unmarshal(raw, &req)
	}
	if err != nil {
		writeError(w, badRequest(`The body must be one JSON object {"thresholds":[50,80,100],"webhook_url":"https://…","webhook_secret":"whsec_…"}, each field optional and given once.`), 0)
		return
	}
	s := limiter.NoticeSettings{URL: req.WebhookURL, Secret: req.WebhookSecret}
	if req.Thresholds != nil {
		sorted, err := limiter.CheckThresholds(*req.Thresholds)
		if err != nil {
			writeError(w, invalidData("thresholds: "+err.Error()+".", map[string]any{"thresholds": *req.Thresholds}), 0)
			return
		}
		s.Thresholds = &sorted
	}
	if (req.WebhookURL == nil) != (req.WebhookSecret == nil) {
		writeError(w, invalidData("webhook_url and webhook_secret go together: give both, or neither.", nil), 0)
		return
	}
	if req.WebhookURL != nil {
		if err := CheckWebhookURL(*req.WebhookURL); err != nil {
			writeError(w, invalidData("webhook_url: "+err.Error()+".", nil), 0)
			return
		}
		if _, err := ParseWebhookSecret(*req.WebhookSecret); err != nil {
			writeError(w, invalidData("webhook_secret: "+err.Error()+".", nil), 0)
			return
		}
	}
	g.setNotices(w, r, t, &s)
}

// deleteNotices answers DELETE /admin/v1/orgs/{org}/notices: the configured settings apply
// again.
func (g *Gateway) deleteNotices(w http.ResponseWriter, r *http.Request) {
	if t, ok := g.noticesTarget(w, r); ok {
		g.setNotices(w, r, t, nil)
	}
}

// setNotices stores t's settings (nil: deletes them) and answers those in force.
func (g *Gateway) setNotices(w http.ResponseWriter, r *http.Request, t *orgState, s *limiter.NoticeSettings) {
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.StoreTimeout)
	err := g.cfg.Store.SetNotices(ctx, t.org.ID, s)
	cancel()
	if err != nil {
		g.log.Error("notice settings not stored", zap.String("org", t.org.ID), zap.Error(err))
		writeError(w, errStoreUnavailable, 1)
		return
	}
	g.log.Info("notice settings changed", zap.String("org", t.org.ID), zap.Bool("deleted", s == nil))
	if st, ok := g.readNotices(w, r, t); ok {
		writeJSON(w, g.noticesOf(t, st))
	}
}

// usageNoticesOf returns the notices part of t's usage, or nil when the org has no
// thresholds and none fired, without notices, or when the store cannot say (the rest of the
// usage is still answered).
func (g *Gateway) usageNoticesOf(ctx context.Context, t *orgState) *usageNotices {
	if g.notices == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.StoreTimeout)
	st, err := g.cfg.Store.Notices(ctx, t.org.ID)
	cancel()
	if err != nil {
		g.log.Warn("notices not read for the usage", zap.String("org", t.org.ID), zap.Error(err))
		return nil
	}
	n := g.noticesOf(t, st)
	if len(n.Thresholds) == 0 && len(n.Fired) == 0 {
		return nil
	}
	return &usageNotices{Thresholds: n.Thresholds, Armed: n.Armed, Fired: n.Fired}
}
