package plans

import (
	"math"
	"slices"
	"testing"
)

func TestAllotment(t *testing.T) {
	tests := []struct {
		edition string
		give    Seats
		want    int64
	}{
		{"crm-free", Seats{}, 5_000},
		{"crm-free", Seats{Users: 3}, 5_000},
		{"crm-free", Seats{Users: 3, Addon: 10_000}, 5_000}, // no add-ons on free editions
		{"crm-standard", Seats{Users: 10}, 7_500},
		{"crm-standard", Seats{Users: 10, Addon: 2_500}, 10_000},
		{"crm-standard", Seats{Users: 1_000}, 100_000}, // 255,000 capped
		{"crm-starter", Seats{Users: 4}, 6_000},
		{"crm-professional", Seats{Users: 20}, 20_000},
		{"crm-professional", Seats{Users: 1_000}, 500_000}, // the reference's example: not 510,000
		{"crm-professional", Seats{Users: 900, Addon: 100_000}, 500_000},
		{"crm-enterprise", Seats{Users: 50}, 65_000},
		{"crm-enterprise", Seats{Users: 2_000}, 1_000_000},
		{"crm-zohoone", Seats{Users: 50}, 65_000},
		{"crm-crmplus", Seats{Users: 50, Addon: 5_000}, 70_000},
		{"crm-ultimate", Seats{Users: 10}, 35_000},
		{"crm-ultimate", Seats{Users: 1_000}, 2_015_000}, // no maximum
		{"crm-ultimate", Seats{Users: 1_000, Addon: 500_000}, 2_515_000},
		{"desk-free", Seats{Agents: 10}, 5_000},
		{"desk-free", Seats{Agents: 10, Addon: 1_000}, 5_000},
		{"desk-express", Seats{Agents: 10}, 26_000},
		{"desk-standard", Seats{Agents: 10}, 52_500},
		{"desk-professional", Seats{Agents: 10}, 80_000},
		{"desk-professional", Seats{Agents: 10, LightAgents: 40}, 80_000}, // light agents earn nothing
		{"desk-enterprise", Seats{Agents: 10, LightAgents: 5, Addon: 20_000}, 130_000},
		{"desk-enterprise", Seats{Agents: 10_000}, 10_100_000}, // no maximum
		{"desk-zohoone", Seats{Agents: 10}, 110_000},
		{"desk-crmplus", Seats{Agents: 10}, 110_000},
		{"desk-serviceplus", Seats{Agents: 10}, 110_000},
		{"desk-standard", Seats{Users: 10}, 50_000}, // users do not count on Desk
		{"crm-standard", Seats{Agents: 10}, 5_000},  // nor agents on CRM

		// Grandfathering: the higher of the legacy limit and the credit model.
		{"crm-professional", Seats{Users: 20, Legacy: 25_000}, 25_000},
		{"crm-professional", Seats{Users: 20, Legacy: 15_000}, 20_000},
		{"crm-standard", Seats{Users: 1_000, Legacy: 150_000}, 150_000}, // above the maximum
		{"desk-express", Seats{Agents: 10, Legacy: 50_000}, 50_000},
		{"crm-free", Seats{Legacy: 10_000}, 10_000},

		// Monthly plans are not counted in a rolling window.
		{"monthly", Seats{Users: 10, Legacy: 1_000}, 0},

		// Negative counts are a caller's bug, read as zero.
		{"crm-professional", Seats{Users: -20, Addon: -5, Legacy: -1}, 10_000},
		{"desk-standard", Seats{Agents: -3}, 50_000},

		// Saturation instead of overflow.
		{"crm-ultimate", Seats{Users: math.MaxInt64}, MaxAllotment},
		{"crm-ultimate", Seats{Users: math.MaxInt64 / 2000, Addon: math.MaxInt64}, MaxAllotment},
		{"desk-enterprise", Seats{Agents: math.MaxInt64, Legacy: math.MaxInt64}, MaxAllotment},
		{"crm-enterprise", Seats{Users: math.MaxInt64}, 1_000_000},
	}
	for _, tt := range tests {
		e, ok := LookupEdition(tt.edition)
		if !ok {
			t.Fatalf("LookupEdition(%q) not found", tt.edition)
		}
		if got := e.Allotment(tt.give); got != tt.want {
			t.Errorf("%s.Allotment(%+v) = %d, want %d", tt.edition, tt.give, got, tt.want)
		}
	}
}

func TestAllotmentCustomEdition(t *testing.T) {
	tests := []struct {
		give Edition
		want int64
	}{
		{Edition{Kind: KindCRM, Base: -100, PerSeat: -1}, 0},
		{Edition{Kind: KindDesk, Base: 10, PerSeat: 1, Max: 12, AddOns: true}, 12},
		{Edition{Base: 10}, 0}, // no Kind
		{Edition{Kind: KindCRM, Base: math.MaxInt64, PerSeat: math.MaxInt64}, MaxAllotment},
	}
	for _, tt := range tests {
		if got := tt.give.Allotment(Seats{Users: 5, Agents: 5, Addon: 5}); got != tt.want {
			t.Errorf("%+v.Allotment = %d, want %d", tt.give, got, tt.want)
		}
	}
}

func TestEditions(t *testing.T) {
	tests := []struct {
		give            string
		wantKind        Kind
		wantMax         int64
		wantConcurrency int64
		wantAddOns      bool
	}{
		{"crm-free", KindCRM, 5_000, 5, false},
		{"crm-standard", KindCRM, 100_000, 10, true},
		{"crm-starter", KindCRM, 100_000, 10, true},
		{"crm-professional", KindCRM, 500_000, 15, true},
		{"crm-enterprise", KindCRM, 1_000_000, 20, true},
		{"crm-zohoone", KindCRM, 1_000_000, 20, true},
		{"crm-crmplus", KindCRM, 1_000_000, 20, true},
		{"crm-ultimate", KindCRM, 0, 25, true},
		{"desk-free", KindDesk, 0, 5, false},
		{"desk-express", KindDesk, 0, 10, true},
		{"desk-standard", KindDesk, 0, 10, true},
		{"desk-professional", KindDesk, 0, 15, true},
		{"desk-enterprise", KindDesk, 0, 20, true},
		{"desk-zohoone", KindDesk, 0, 20, true},
		{"desk-crmplus", KindDesk, 0, 20, true},
		{"desk-serviceplus", KindDesk, 0, 20, true},
		{"monthly", KindMonthly, 0, 10, false},
	}
	var names []string
	for _, tt := range tests {
		e, ok := LookupEdition(tt.give)
		if !ok {
			t.Errorf("LookupEdition(%q) not found", tt.give)
			continue
		}
		if e.Name != tt.give || e.Kind != tt.wantKind || e.Max != tt.wantMax || e.Concurrency != tt.wantConcurrency || e.AddOns != tt.wantAddOns {
			t.Errorf("LookupEdition(%q) = %+v, want kind %v, max %d, concurrency %d, add-ons %v",
				tt.give, e, tt.wantKind, tt.wantMax, tt.wantConcurrency, tt.wantAddOns)
		}
		names = append(names, tt.give)
	}
	slices.Sort(names)
	if got := EditionNames(); !slices.Equal(got, names) {
		t.Errorf("EditionNames = %q, want %q", got, names)
	}
}

func TestLookupEdition(t *testing.T) {
	tests := []struct {
		give   string
		want   string
		wantOK bool
	}{
		{"crm-professional", "crm-professional", true},
		{"CRM-Professional", "crm-professional", true},
		{"crm-pro", "", false},
		{"", "", false},
		{"professional", "", false},
	}
	for _, tt := range tests {
		e, ok := LookupEdition(tt.give)
		if e.Name != tt.want || ok != tt.wantOK {
			t.Errorf("LookupEdition(%q) = %q, %v; want %q, %v", tt.give, e.Name, ok, tt.want, tt.wantOK)
		}
	}
}

func TestKindString(t *testing.T) {
	tests := []struct {
		give Kind
		want string
	}{
		{KindCRM, "crm"},
		{KindDesk, "desk"},
		{KindMonthly, "monthly"},
		{0, "Kind(0)"},
	}
	for _, tt := range tests {
		if got := tt.give.String(); got != tt.want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(tt.give), got, tt.want)
		}
	}
}
