package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/gateway"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// plans is who may call and what each org's plan allots: the editions (built in, or changed
// by CREDITGATE_EDITIONS_FILE) and the orgs (CREDITGATE_ORGS plus CREDITGATE_ORGS_FILE). It is
// read at start-up and again on SIGHUP, and is immutable once built.
type plans struct {
	editions costtable.Editions
	orgs     []orgs.Org
	dir      *orgs.Directory
}

// loadPlans reads the editions and orgs the configuration names. Every problem is reported,
// each line starting with the variable (or file variable) it comes from.
func (c *Config) loadPlans() (*plans, error) {
	p := &plans{editions: costtable.BuiltinEditions()}
	var errs []error
	if c.EditionsFile != "" {
		eds, err := costtable.LoadEditionsFile(c.EditionsFile)
		if err != nil {
			return nil, prefixLines("CREDITGATE_EDITIONS_FILE", err)
		}
		p.editions = eds
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
	for _, src := range []struct {
		name string
		list []orgs.Org
	}{{"CREDITGATE_ORGS", fromEnv}, {"CREDITGATE_ORGS_FILE", fromFile}} {
		for _, o := range src.list {
			if err := p.checkOrg(o, c.OrgMode); err != nil {
				errs = append(errs, prefixLines(src.name, err))
			}
		}
	}
	p.orgs = append(fromEnv, fromFile...)
	if len(p.orgs) == 0 && (c.OrgMode != "jwt" || c.JWTDefaultPlan == "") {
		errs = append(errs, errors.New("CREDITGATE_ORGS: no orgs configured (nor in CREDITGATE_ORGS_FILE)"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	dir, err := orgs.NewDirectory(p.orgs)
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

// checkOrg checks what the parser cannot: the edition exists and the org has some limit.
func (p *plans) checkOrg(o orgs.Org, mode string) error {
	var errs []error
	e, known := p.editions.Lookup(o.Edition)
	if o.Edition != "" && !known {
		errs = append(errs, fmt.Errorf("org %q: field \"edition\": unknown edition %q (known: %s)",
			o.ID, o.Edition, strings.Join(p.editions.Names(), ", ")))
	}
	// Seats of the other kind would be ignored silently, and the allotment wrong.
	switch {
	case known && e.Kind == costtable.KindDesk && o.Users > 0:
		errs = append(errs, fmt.Errorf("org %q: field \"users\": Desk edition %q counts agents, not users", o.ID, o.Edition))
	case known && e.Kind != costtable.KindDesk && (o.Agents > 0 || o.LightAgents > 0):
		f := "agents"
		if o.Agents == 0 {
			f = "light_agents"
		}
		errs = append(errs, fmt.Errorf("org %q: field %q: edition %q does not count agents (Desk editions do)", o.ID, f, o.Edition))
	}
	if !o.HasLimit && o.Edition == "" {
		errs = append(errs, fmt.Errorf("org %q: needs a \"limit\" or an \"edition\"", o.ID))
	}
	if known && e.Kind == costtable.KindMonthly {
		if o.MonthlyLimit < 1 {
			errs = append(errs, fmt.Errorf("org %q: field \"monthly_limit\": a monthly plan needs its calls per period (at least 1)", o.ID))
		}
		if o.MonthlyLimit > 1<<40 {
			errs = append(errs, fmt.Errorf("org %q: field \"monthly_limit\": at most %d, got %d", o.ID, int64(1<<40), o.MonthlyLimit))
		}
		if most := limiter.MaxAdditional(o.MonthlyLimit); o.Additional > most {
			errs = append(errs, fmt.Errorf("org %q: field \"additional\": at most twice monthly_limit (%d), got %d", o.ID, most, o.Additional))
		}
	} else if o.MonthlyLimit > 0 || o.Additional > 0 {
		errs = append(errs, fmt.Errorf("org %q: fields \"monthly_limit\" and \"additional\" apply to monthly plans only (edition=monthly)", o.ID))
	}
	if a := p.addonPlanOf(&o); o.Addon > a.Cap {
		if a.Cap == 0 {
			errs = append(errs, fmt.Errorf("org %q: field \"addon\": this org cannot have add-on credits (free and trial editions, monthly plans and orgs without an edition cannot)", o.ID))
		} else {
			errs = append(errs, fmt.Errorf("org %q: field \"addon\": at most %d (500,000, and at most the edition's maximum minus the free allotment), got %d", o.ID, a.Cap, o.Addon))
		}
	}
	if o.Limit > costtable.MaxAllotment {
		errs = append(errs, fmt.Errorf("org %q: field \"limit\": at most %d, got %d", o.ID, costtable.MaxAllotment, o.Limit))
	}
	if mode == "apikey" && len(o.Keys) == 0 {
		errs = append(errs, fmt.Errorf("org %q: field \"keys\": needed in apikey mode (the org could never call)", o.ID))
	}
	return errors.Join(errs...)
}

// concurrencyOf returns an org's cap on calls in flight: its own, else its edition's, else
// none.
func (p *plans) concurrencyOf(o *orgs.Org) int64 {
	if o.Concurrency > 0 {
		return o.Concurrency
	}
	if e, ok := p.editions.Lookup(o.Edition); ok {
		return e.Concurrency
	}
	return 0
}

// limitOf returns an org's credits per window: its explicit limit, or its edition's
// allotment for its seats.
func (p *plans) limitOf(o *orgs.Org) int64 {
	if o.HasLimit {
		return o.Limit
	}
	e, ok := p.editions.Lookup(o.Edition)
	if !ok {
		return 0
	}
	if e.Kind == costtable.KindMonthly {
		return costtable.MaxAllotment // a monthly plan without "limit" has no credit window
	}
	return e.Allotment(costtable.Seats{
		Users: o.Users, Agents: o.Agents, LightAgents: o.LightAgents, Addon: o.Addon, Legacy: o.Legacy,
	})
}

// addonPlanOf returns what an org may buy in add-on credits: its free allotment (its explicit
// limit, else its edition's allotment without add-ons), the configured add-on limit, and the
// cap on it (costtable.AddonCap; 0 without an edition that sells add-ons).
func (p *plans) addonPlanOf(o *orgs.Org) gateway.AddonPlan {
	e, ok := p.editions.Lookup(o.Edition)
	if !ok {
		return gateway.AddonPlan{Free: p.limitOf(o)}
	}
	free := o.Limit
	if !o.HasLimit {
		free = e.Allotment(costtable.Seats{Users: o.Users, Agents: o.Agents, LightAgents: o.LightAgents, Legacy: o.Legacy})
	}
	a := gateway.AddonPlan{Edition: e.Name, Free: free, Cap: costtable.AddonCap(e, free)}
	a.Addon = min(o.Addon, a.Cap)
	return a
}
