package plans

import (
	"errors"
	"fmt"
	"strings"

	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
)

// MaxAdditional returns the most additional calls per period a monthly plan of monthly calls
// may have: twice its monthly calls. A larger number configured or stored counts as this.
func MaxAdditional(monthly int64) int64 { return 2 * monthly }

// Billing is how monthly plans are billed, the same for every org.
type Billing struct {
	// AnchorDay is the day of the month (1 to 28) on which subscription periods start, at
	// 00:00 UTC.
	AnchorDay int
	// CallPrice and CallPriceCommercial price one additional call, in micro-dollars, for an
	// org without and with the "commercial" field.
	CallPrice, CallPriceCommercial int64
}

// Addon is what an org may buy on top of its plan: add-on credits on a window plan, or
// additional calls on a monthly plan.
type Addon struct {
	// Edition is the org's edition name, shown in answers.
	Edition string
	// Free is the org's free allotment: its credits per window without add-ons.
	Free int64
	// Addon is the configured add-on limit (the org's "addon" field, at most Cap), in force
	// until an admin sets one through the admin API; from then on the stored one wins, 0
	// meaning off.
	Addon int64
	// Cap is the largest add-on limit an admin may set (AddonCap); 0 means the org cannot have
	// add-ons (free and trial editions, orgs without an edition).
	Cap int64
	// Monthly, above 0, makes the org a monthly plan: Monthly calls per subscription period
	// starting on AnchorDay (1 to 28) of each month. Addon and Cap then count additional calls
	// (Cap is MaxAdditional(Monthly)), each priced CallPrice micro-dollars; Free is unused.
	Monthly   int64
	AnchorDay int
	CallPrice int64
}

// Allowance returns the add-on credits (or additional calls) in force: stored when the store
// holds an allowance (set), else the configured a.Addon, counting as at most a.Cap. The
// stores' scripts compute the same (limiter.Allowance).
func (a Addon) Allowance(stored int64, set bool) int64 {
	return limiter.Allowance(stored, set, a.Addon, a.Cap)
}

// Plans answers what each org's plan allows, by the editions in force. It is immutable and
// safe for concurrent use; a reload builds a new one.
type Plans struct {
	editions Editions
	billing  Billing
}

// New returns the plans of editions, monthly plans billed by b.
func New(editions Editions, b Billing) *Plans { return &Plans{editions: editions, billing: b} }

// Editions returns the editions in force.
func (p *Plans) Editions() Editions { return p.editions }

// LimitOf returns an org's credits per window: its explicit limit, or its edition's
// allotment for its seats (add-on credits included); MaxAllotment for a monthly plan without
// a limit, which has no credit window; 0 without either.
func (p *Plans) LimitOf(o *orgs.Org) int64 {
	if o.HasLimit {
		return o.Limit
	}
	e, ok := p.editions.Lookup(o.Edition)
	if !ok {
		return 0
	}
	if e.Kind == KindMonthly {
		return MaxAllotment // a monthly plan without "limit" has no credit window
	}
	return e.Allotment(seats(o, o.Addon))
}

// ConcurrencyOf returns an org's cap on calls in flight: its own, else its edition's, else
// none (0).
func (p *Plans) ConcurrencyOf(o *orgs.Org) int64 {
	if o.Concurrency > 0 {
		return o.Concurrency
	}
	if e, ok := p.editions.Lookup(o.Edition); ok {
		return e.Concurrency
	}
	return 0
}

// AddonOf returns what an org may buy: for a window plan its free allotment, configured
// add-on limit and cap; for a monthly plan its calls per period, additional calls (at most
// MaxAdditional), price per additional call and period anchor.
func (p *Plans) AddonOf(o *orgs.Org) Addon {
	e, ok := p.editions.Lookup(o.Edition)
	if !ok || e.Kind != KindMonthly {
		return p.windowAddonOf(o)
	}
	price := p.billing.CallPrice
	if o.Commercial {
		price = p.billing.CallPriceCommercial
	}
	a := Addon{Edition: e.Name, Monthly: o.MonthlyLimit, Addon: o.Additional, Cap: MaxAdditional(o.MonthlyLimit),
		AnchorDay: p.billing.AnchorDay, CallPrice: price}
	a.Addon = a.Allowance(0, false)
	return a
}

// windowAddonOf returns the add-on credits an org may buy on a window plan: its free
// allotment (its explicit limit, else its edition's allotment without add-ons), the
// configured add-on limit, and the cap on it (AddonCap; 0 without an edition that sells
// add-ons, monthly plans included).
func (p *Plans) windowAddonOf(o *orgs.Org) Addon {
	e, ok := p.editions.Lookup(o.Edition)
	if !ok {
		return Addon{Free: p.LimitOf(o)}
	}
	free := o.Limit
	if !o.HasLimit {
		free = e.Allotment(seats(o, 0))
	}
	a := Addon{Edition: e.Name, Free: free, Addon: o.Addon, Cap: AddonCap(e, free)}
	a.Addon = a.Allowance(0, false)
	return a
}

// seats returns what of o its allotment depends on, with addon add-on credits.
func seats(o *orgs.Org, addon int64) Seats {
	return Seats{Users: o.Users, Agents: o.Agents, LightAgents: o.LightAgents, Addon: addon, Legacy: o.Legacy}
}

// Check checks o against the editions, for what the orgs parser cannot know: the edition
// exists, the seats are of its kind, the org has some limit, a monthly plan's calls and
// additional calls, the add-on limit and the explicit limit are in range, and, with needKeys
// (orgs identified by API key), the org has a key. Every problem is reported, each naming the
// org and the field.
func (p *Plans) Check(o *orgs.Org, needKeys bool) error {
	var errs []error
	e, known := p.editions.Lookup(o.Edition)
	if o.Edition != "" && !known {
		errs = append(errs, fmt.Errorf("org %q: field \"edition\": unknown edition %q (known: %s)",
			o.ID, o.Edition, strings.Join(p.editions.Names(), ", ")))
	}
	// Seats of the other kind would be ignored silently, and the allotment wrong.
	switch {
	case known && e.Kind == KindDesk && o.Users > 0:
		errs = append(errs, fmt.Errorf("org %q: field \"users\": Desk edition %q counts agents, not users", o.ID, o.Edition))
	case known && e.Kind != KindDesk && (o.Agents > 0 || o.LightAgents > 0):
		f := "agents"
		if o.Agents == 0 {
			f = "light_agents"
		}
		errs = append(errs, fmt.Errorf("org %q: field %q: edition %q does not count agents (Desk editions do)", o.ID, f, o.Edition))
	}
	if !o.HasLimit && o.Edition == "" {
		errs = append(errs, fmt.Errorf("org %q: needs a \"limit\" or an \"edition\"", o.ID))
	}
	if known && e.Kind == KindMonthly {
		if o.MonthlyLimit < 1 {
			errs = append(errs, fmt.Errorf("org %q: field \"monthly_limit\": a monthly plan needs its calls per period (at least 1)", o.ID))
		}
		if o.MonthlyLimit > 1<<40 {
			errs = append(errs, fmt.Errorf("org %q: field \"monthly_limit\": at most %d, got %d", o.ID, int64(1<<40), o.MonthlyLimit))
		}
		if most := MaxAdditional(o.MonthlyLimit); o.Additional > most {
			errs = append(errs, fmt.Errorf("org %q: field \"additional\": at most twice monthly_limit (%d), got %d", o.ID, most, o.Additional))
		}
	} else if o.MonthlyLimit > 0 || o.Additional > 0 {
		errs = append(errs, fmt.Errorf("org %q: fields \"monthly_limit\" and \"additional\" apply to monthly plans only (edition=monthly)", o.ID))
	}
	if a := p.windowAddonOf(o); o.Addon > a.Cap {
		if a.Cap == 0 {
			errs = append(errs, fmt.Errorf("org %q: field \"addon\": this org cannot have add-on credits (free and trial editions, monthly plans and orgs without an edition cannot)", o.ID))
		} else {
			errs = append(errs, fmt.Errorf("org %q: field \"addon\": at most %d (500,000, and at most the edition's maximum minus the free allotment), got %d", o.ID, a.Cap, o.Addon))
		}
	}
	if o.Limit > MaxAllotment {
		errs = append(errs, fmt.Errorf("org %q: field \"limit\": at most %d, got %d", o.ID, MaxAllotment, o.Limit))
	}
	if needKeys && len(o.Keys) == 0 {
		errs = append(errs, fmt.Errorf("org %q: field \"keys\": needed in apikey mode (the org could never call)", o.ID))
	}
	return errors.Join(errs...)
}
