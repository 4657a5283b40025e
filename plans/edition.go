package plans

import "fmt"

// MaxAllotment is the most credits Allotment returns: the largest integer a Redis Lua number
// (a double) holds exactly, so a window's limit survives the trip through the limiter's
// script. Larger results saturate here rather than overflow.
const MaxAllotment int64 = 1<<53 - 1

// Kind says how an edition's allotment grows.
type Kind int

const (
	// KindCRM grows per user and stops at the edition maximum.
	KindCRM Kind = iota + 1
	// KindDesk grows per agent, light agents excluded, with no maximum.
	KindDesk
	// KindMonthly is a plan with a monthly call limit rather than a rolling-window allotment.
	KindMonthly
)

func (k Kind) String() string {
	switch k {
	case KindCRM:
		return "crm"
	case KindDesk:
		return "desk"
	case KindMonthly:
		return "monthly"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Edition is a plan's credit allotment and default limits.
type Edition struct {
	// Name is the configuration name, such as "crm-professional".
	Name string
	// Kind says which seats count: users (KindCRM) or agents (KindDesk).
	Kind Kind
	// Base is the credits every org on the edition gets, whatever its size.
	Base int64
	// PerSeat is the credits added per user (KindCRM) or per agent (KindDesk).
	PerSeat int64
	// Max caps the allotment, add-on credits included. Zero means no maximum.
	Max int64
	// Concurrency is the default cap on an org's in-flight calls.
	Concurrency int64
	// AddOns reports whether the edition may buy add-on credits; free editions may not.
	AddOns bool
}

// Seats is what an org has that its allotment depends on.
type Seats struct {
	// Users is the number of user licenses (CRM editions).
	Users int64
	// Agents is the number of full agents (Desk editions).
	Agents int64
	// LightAgents is the number of light agents (Desk editions). They earn no credits; the
	// field is kept so that configuration and usage pages can show them.
	LightAgents int64
	// Addon is the add-on credit limit currently set. It counts only on editions with AddOns.
	Addon int64
	// Legacy is a grandfathered limit from before the credit model; zero if none.
	Legacy int64
}

// Allotment returns the credits per window an org with these seats gets:
//
//	CRM:  min(Base + Users×PerSeat + Addon, Max)   (Max 0: no cap)
//	Desk: Base + Agents×PerSeat + Addon            (light agents not counted)
//
// and max(Legacy, that) when the org has a legacy limit. Allotment with Addon 0 is the free
// allotment; what the add-on limit adds on top is the difference. Monthly plans are not
// counted in a rolling window: their allotment is 0. Negative counts are treated as 0, and the
// result saturates at MaxAllotment.
func (e Edition) Allotment(s Seats) int64 {
	var seats int64
	switch e.Kind {
	case KindCRM:
		seats = s.Users
	case KindDesk:
		seats = s.Agents
	default:
		return 0
	}
	total := addCredits(clamp(e.Base), mulCredits(clamp(seats), clamp(e.PerSeat)))
	if e.AddOns {
		total = addCredits(total, clamp(s.Addon))
	}
	if e.Max > 0 {
		total = min(total, e.Max)
	}
	return max(total, clamp(s.Legacy))
}

// clamp bounds a count to [0, MaxAllotment]; a negative count is a caller's bug, read as none.
func clamp(n int64) int64 { return min(max(n, 0), MaxAllotment) }

// addCredits adds two clamped counts; the sum cannot overflow int64.
func addCredits(a, b int64) int64 { return min(a+b, MaxAllotment) }

// mulCredits multiplies two clamped counts, saturating at MaxAllotment.
func mulCredits(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > MaxAllotment/b {
		return MaxAllotment
	}
	return a * b
}

// Concurrency defaults: CRM publishes Free 5, Standard 10, Professional 15, Enterprise 20 and
// Ultimate 25. Desk shows a concurrency limit but publishes no figures, so Desk editions use the
// CRM scale by tier (Express, an entry-level paid edition, like Standard), and the monthly plan
// gets the Standard figure.
var editions = map[string]Edition{
	"crm-free":         {Kind: KindCRM, Base: 5_000, Max: 5_000, Concurrency: 5},
	"crm-standard":     {Kind: KindCRM, Base: 5_000, PerSeat: 250, Max: 100_000, Concurrency: 10, AddOns: true},
	"crm-starter":      {Kind: KindCRM, Base: 5_000, PerSeat: 250, Max: 100_000, Concurrency: 10, AddOns: true},
	"crm-professional": {Kind: KindCRM, Base: 10_000, PerSeat: 500, Max: 500_000, Concurrency: 15, AddOns: true},
	"crm-enterprise":   {Kind: KindCRM, Base: 15_000, PerSeat: 1_000, Max: 1_000_000, Concurrency: 20, AddOns: true},
	"crm-zohoone":      {Kind: KindCRM, Base: 15_000, PerSeat: 1_000, Max: 1_000_000, Concurrency: 20, AddOns: true},
	"crm-crmplus":      {Kind: KindCRM, Base: 15_000, PerSeat: 1_000, Max: 1_000_000, Concurrency: 20, AddOns: true},
	"crm-ultimate":     {Kind: KindCRM, Base: 15_000, PerSeat: 2_000, Concurrency: 25, AddOns: true},

	"desk-free":         {Kind: KindDesk, Base: 5_000, Concurrency: 5},
	"desk-express":      {Kind: KindDesk, Base: 25_000, PerSeat: 100, Concurrency: 10, AddOns: true},
	"desk-standard":     {Kind: KindDesk, Base: 50_000, PerSeat: 250, Concurrency: 10, AddOns: true},
	"desk-professional": {Kind: KindDesk, Base: 75_000, PerSeat: 500, Concurrency: 15, AddOns: true},
	"desk-enterprise":   {Kind: KindDesk, Base: 100_000, PerSeat: 1_000, Concurrency: 20, AddOns: true},
	// The Zoho bundles (Zoho One, CRM Plus, Service Plus) get the Desk Enterprise figures.
	"desk-zohoone":     {Kind: KindDesk, Base: 100_000, PerSeat: 1_000, Concurrency: 20, AddOns: true},
	"desk-crmplus":     {Kind: KindDesk, Base: 100_000, PerSeat: 1_000, Concurrency: 20, AddOns: true},
	"desk-serviceplus": {Kind: KindDesk, Base: 100_000, PerSeat: 1_000, Concurrency: 20, AddOns: true},

	// A monthly plan buys additional calls per period, not add-on credits.
	"monthly": {Kind: KindMonthly, Concurrency: 10},
}

// LookupEdition returns the built-in edition with this configuration name, such as
// "crm-professional", ignoring case.
func LookupEdition(name string) (Edition, bool) { return BuiltinEditions().Lookup(name) }

// EditionNames returns the configuration names of the built-in editions, sorted.
func EditionNames() []string { return BuiltinEditions().Names() }
