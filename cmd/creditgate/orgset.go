package main

import (
	"errors"
	"fmt"

	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
	"github.com/creditgate/creditgate/plans"
)

// orgSet is who may call and what each org's plan allots: the plans of the editions (built
// in, or changed by CREDITGATE_EDITIONS_FILE) and the orgs (CREDITGATE_ORGS plus
// CREDITGATE_ORGS_FILE). It is read at start-up and again on SIGHUP, and is immutable once
// built.
type orgSet struct {
	*plans.Plans
	dir *orgs.Directory
}

// loadOrgSet reads the editions and orgs the configuration names, and checks the orgs against
// the editions. Every problem is reported, each line starting with the variable (or file
// variable) it comes from.
func (c *Config) loadOrgSet() (*orgSet, error) {
	editions := plans.BuiltinEditions()
	var errs []error
	if c.EditionsFile != "" {
		eds, err := plans.LoadEditionsFile(c.EditionsFile)
		if err != nil {
			return nil, prefixLines("CREDITGATE_EDITIONS_FILE", err)
		}
		editions = eds
	}

	var fromEnv, fromFile []orgs.Org
	if c.Orgs != "" {
		list, err := orgs.Parse(c.Orgs)
		if err != nil {
			errs = append(errs, prefixLines("CREDITGATE_ORGS", err))
		}
		fromEnv = list
	}
	if c.OrgsFile != "" {
		list, err := orgs.LoadFile(c.OrgsFile)
		if err != nil {
			errs = append(errs, prefixLines("CREDITGATE_ORGS_FILE", err))
		}
		fromFile = list
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p := &orgSet{Plans: plans.New(editions, c.billing())}
	for _, src := range []struct {
		name string
		list []orgs.Org
	}{{"CREDITGATE_ORGS", fromEnv}, {"CREDITGATE_ORGS_FILE", fromFile}} {
		for i := range src.list {
			if err := p.Check(&src.list[i], c.OrgMode == "apikey"); err != nil {
				errs = append(errs, prefixLines(src.name, err))
			}
			if err := checkOrgNotices(&src.list[i]); err != nil {
				errs = append(errs, fmt.Errorf("%s: org %q: %w", src.name, src.list[i].ID, err))
			}
		}
	}
	all := fromFile // a file may hold a million orgs: not copied when it holds them all
	if len(fromEnv) > 0 {
		all = append(fromEnv, fromFile...)
	}
	if len(all) == 0 && (c.OrgMode != "jwt" || c.JWTDefaultPlan == "") {
		errs = append(errs, errors.New("CREDITGATE_ORGS: no orgs configured (nor in CREDITGATE_ORGS_FILE)"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	dir, err := orgs.NewDirectory(all)
	if err != nil {
		src := "CREDITGATE_ORGS"
		switch {
		case c.Orgs != "" && c.OrgsFile != "":
			src = "CREDITGATE_ORGS and CREDITGATE_ORGS_FILE"
		case c.OrgsFile != "":
			src = "CREDITGATE_ORGS_FILE"
		}
		return nil, prefixLines(src, err)
	}
	p.dir = dir
	return p, nil
}

// checkOrgNotices checks o's usage notice fields, and sorts its thresholds.
func checkOrgNotices(o *orgs.Org) error {
	if o.HasNotify {
		sorted, err := limiter.CheckThresholds(o.NotifyThresholds)
		if err != nil {
			return fmt.Errorf("field \"notify_thresholds\": %w", err)
		}
		o.NotifyThresholds = sorted
	}
	if err := checkWebhook(o.WebhookURL, o.WebhookSecret); err != nil {
		return fmt.Errorf("field \"webhook_url\": %w", err)
	}
	return nil
}

// billing returns how monthly plans are billed, from CREDITGATE_BILLING_ANCHOR_DAY and the
// call prices.
func (c *Config) billing() plans.Billing {
	return plans.Billing{AnchorDay: c.AnchorDay, CallPrice: c.callPrices[0], CallPriceCommercial: c.callPrices[1]}
}
