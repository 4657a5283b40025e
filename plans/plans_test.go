package plans

import (
	"strings"
	"testing"

	"github.com/creditgate/creditgate/orgs"
)

// parseOrg parses one org in the CREDITGATE_ORGS syntax, as an org given at run time is.
func parseOrg(t *testing.T, s string) *orgs.Org {
	t.Helper()
	list, err := orgs.Parse(s)
	if err != nil || len(list) != 1 {
		t.Fatalf("parse %q: %v", s, err)
	}
	return &list[0]
}

func TestPlansOfAnOrg(t *testing.T) {
	p := New(BuiltinEditions(), Billing{AnchorDay: 15, CallPrice: 20_000, CallPriceCommercial: 60_000})
	tests := []struct {
		give      string
		wantLimit int64
		wantConc  int64
		wantAddon Addon
	}{
		{"a:limit=500", 500, 0, Addon{Free: 500}},
		{"a:edition=crm-professional,users=20,addon=2000", 22_000, 15,
			Addon{Edition: "crm-professional", Free: 20_000, Addon: 2_000, Cap: 480_000}},
		{"a:edition=crm-free,concurrency=3", 5_000, 3, Addon{Edition: "crm-free", Free: 5_000}},
		{"a:edition=desk-standard,agents=4,light_agents=9", 51_000, 10,
			Addon{Edition: "desk-standard", Free: 51_000, Cap: 500_000}},
		{"a:edition=monthly,monthly_limit=100,additional=50,commercial=true", MaxAllotment, 10,
			Addon{Edition: "monthly", Monthly: 100, Addon: 50, Cap: 200, AnchorDay: 15, CallPrice: 60_000}},
	}
	for _, tt := range tests {
		o := parseOrg(t, tt.give)
		if got := p.LimitOf(o); got != tt.wantLimit {
			t.Errorf("%s: LimitOf = %d, want %d", tt.give, got, tt.wantLimit)
		}
		if got := p.ConcurrencyOf(o); got != tt.wantConc {
			t.Errorf("%s: ConcurrencyOf = %d, want %d", tt.give, got, tt.wantConc)
		}
		if got := p.AddonOf(o); got != tt.wantAddon {
			t.Errorf("%s: AddonOf = %+v, want %+v", tt.give, got, tt.wantAddon)
		}
	}
}

func TestAddonAllowance(t *testing.T) {
	a := Addon{Addon: 300, Cap: 1_000}
	tests := []struct {
		stored int64
		set    bool
		want   int64
	}{
		{0, false, 300},      // none stored: the configured one
		{0, true, 0},         // stored 0: off
		{700, true, 700},     // stored wins
		{5_000, true, 1_000}, // at most the cap
	}
	for _, tt := range tests {
		if got := a.Allowance(tt.stored, tt.set); got != tt.want {
			t.Errorf("Allowance(%d, %v) = %d, want %d", tt.stored, tt.set, got, tt.want)
		}
	}
}

func TestCheck(t *testing.T) {
	p := New(BuiltinEditions(), Billing{})
	tests := []struct {
		give     string
		needKeys bool
		want     []string // substrings of the error; none: valid
	}{
		{"a:edition=crm-standard,users=3,keys=k", true, nil},
		{"a:edition=crm-standard,users=3", false, nil},
		{"a:edition=crm-standard,users=3", true, []string{`field "keys"`}},
		{"a:edition=gold,keys=k", true, []string{`unknown edition "gold"`}},
		{"a:edition=desk-standard,users=3,keys=k", true, []string{`field "users"`}},
		{"a:edition=monthly,monthly_limit=10,additional=21,keys=k", true, []string{"at most twice monthly_limit (20)"}},
		{"a:edition=crm-free,addon=1,keys=k", true, []string{"cannot have add-on credits"}},
		{"a:concurrency=2,keys=k", true, []string{`needs a "limit" or an "edition"`}},
	}
	for _, tt := range tests {
		err := p.Check(parseOrg(t, tt.give), tt.needKeys)
		if (err == nil) != (len(tt.want) == 0) {
			t.Errorf("%s: %v, want %q", tt.give, err, tt.want)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v, want %q", tt.give, err, w)
			}
		}
	}
}
