package plans

import (
	"slices"
	"strings"
	"testing"
)

// TestSlabPriceReference works the reference's examples with the default slabs.
func TestSlabPriceReference(t *testing.T) {
	tests := []struct {
		name      string
		give      int64
		want      int64
		wantSlabs []int64 // credits per slab
	}{
		// "increase by 75,000 credits": 25,000 at $0.14 = $3.50, 50,000 at $0.06 = $3: $6.50 a day.
		{"75000", 75_000, 6_500_000, []int64{25_000, 50_000, 0, 0}},
		// "100,000 add-on credits is 240 US Dollars, billed monthly": $8.00 a day × 30.
		{"100000", 100_000, 8_000_000, []int64{25_000, 75_000, 0, 0}},
		// 252,886 credits consumed in a day: $3.50 + $4.50 + $7.50 + 2,886 × $0.025/1000. The
		// last slab is $0.07215 (the reference rounds it to $0.07) and the day $15.57215; the
		// reference's "$15.50" is a slip, the rules give $15.57215.
		{"252886", 252_886, 15_572_150, []int64{25_000, 75_000, 150_000, 2_886}},
		{"zero", 0, 0, []int64{0, 0, 0, 0}},
		{"negative", -5, 0, []int64{0, 0, 0, 0}},
		{"one credit", 1, 140, []int64{1, 0, 0, 0}},
		{"slab edge", 25_000, 3_500_000, []int64{25_000, 0, 0, 0}},
		{"next slab first credit", 25_001, 3_500_060, []int64{25_000, 1, 0, 0}},
		{"top slab first credit", 250_001, 15_500_025, []int64{25_000, 75_000, 150_000, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, charges := DefaultSlabs.Price(tt.give)
			if got != tt.want {
				t.Errorf("Price(%d) = %d micros, want %d", tt.give, got, tt.want)
			}
			var credits []int64
			var sum int64
			for _, c := range charges {
				credits = append(credits, c.Credits)
				sum += c.Amount
			}
			if !slices.Equal(credits, tt.wantSlabs) {
				t.Errorf("Price(%d) slabs = %v, want %v", tt.give, credits, tt.wantSlabs)
			}
			if sum != got {
				t.Errorf("Price(%d): slab amounts sum to %d, total %d", tt.give, sum, got)
			}
		})
	}
	if day, _ := DefaultSlabs.Price(100_000); day*30 != 240_000_000 {
		t.Errorf("100,000 add-on credits a month: %d micros, want $240", day*30)
	}
}

// TestSlabRounding checks the stated rule: each slab amount rounds half up to the micro-dollar.
func TestSlabRounding(t *testing.T) {
	tests := []struct {
		give  string
		n     int64
		want  int64
		notes string
	}{
		{"*:0.0015", 1, 2, "1.5 micros rounds up"},
		{"*:0.0014", 1, 1, "1.4 micros rounds down"},
		{"*:0.0005", 1, 1, "0.5 micros rounds up"},
		{"*:0.0004", 1, 0, "0.4 micros rounds down"},
		{"1:0.0015,*:0.0015", 2, 4, "each slab rounds on its own: 2 + 2, not round(3.0)"},
		{"*:0.000001", 999, 1, "0.999 micros"},
		{"*:1000000", MaxAllotment, MaxMicros, "saturates, never overflows"},
	}
	for _, tt := range tests {
		s, err := ParseSlabs(tt.give)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Price(tt.n); got != tt.want {
			t.Errorf("%s: Price(%d) = %d, want %d (%s)", tt.give, tt.n, got, tt.want, tt.notes)
		}
	}
}

func TestParseSlabs(t *testing.T) {
	s, err := ParseSlabs("25000:0.14, 75000:0.06,150000:0.05,*:0.025")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s, DefaultSlabs) {
		t.Errorf("got %v, want the default slabs", s)
	}
	if got := DefaultSlabs.String(); got != "25000:0.14,75000:0.06,150000:0.05,*:0.025" {
		t.Errorf("String() = %q", got)
	}
	bad := []struct{ give, want string }{
		{"", "want credits:dollars"},
		{"25000:0.14", "the last slab must be"},
		{"*:0.1,100:0.2", "only the last slab"},
		{"0:0.1,*:0.1", "credits must be an integer"},
		{"x:0.1,*:0.1", "credits must be an integer"},
		{"*:-1", "price must be"},
		{"*:0.0000001", "price must be"},
		{"*:1e3", "price must be"},
		{"*:2000000", "price must be"},
	}
	for _, tt := range bad {
		if _, err := ParseSlabs(tt.give); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSlabs(%q) = %v, want an error containing %q", tt.give, err, tt.want)
		}
	}
}

func TestAddonCap(t *testing.T) {
	ed := func(name string) Edition { e, _ := LookupEdition(name); return e }
	tests := []struct {
		edition string
		free    int64
		want    int64
	}{
		{"crm-standard", 20_000, 80_000},      // the reference's example: 100,000 − 20,000
		{"crm-professional", 10_000, 490_000}, // edition max 500,000
		{"crm-enterprise", 15_000, 500_000},   // 985,000 above: 500,000 at most
		{"crm-ultimate", 15_000, 500_000},     // no maximum
		{"crm-standard", 100_000, 0},          // already at the maximum
		{"crm-free", 5_000, 0},                // free editions: no add-ons
		{"desk-free", 5_000, 0},
		{"monthly", 0, 0},
	}
	for _, tt := range tests {
		if got := AddonCap(ed(tt.edition), tt.free); got != tt.want {
			t.Errorf("AddonCap(%s, %d) = %d, want %d", tt.edition, tt.free, got, tt.want)
		}
	}
}

func TestMicros(t *testing.T) {
	for _, tt := range []struct {
		give string
		want int64
	}{{"0.14", 140_000}, {"8", 8_000_000}, {"0.025", 25_000}, {"15.57215", 15_572_150}, {"0", 0}} {
		got, err := ParseMicros(tt.give)
		if err != nil || got != tt.want {
			t.Errorf("ParseMicros(%q) = %d, %v; want %d", tt.give, got, err, tt.want)
		}
		if back := FormatMicros(got); back != tt.give {
			t.Errorf("FormatMicros(%d) = %q, want %q", got, back, tt.give)
		}
	}
}

// FuzzSlabPrice: for any price list and usage, the charge is never negative, never falls as
// usage grows, and the slab amounts sum to it.
func FuzzSlabPrice(f *testing.F) {
	f.Add("25000:0.14,75000:0.06,150000:0.05,*:0.025", int64(252_886), int64(1)) // the defaults, the reference's day
	f.Add("*:0.0015", int64(1), int64(1))                                        // rounding half up
	f.Add("1:1000000,*:0", int64(MaxAllotment), int64(3))                        // a free top slab
	f.Add("5:0.000001,*:1000000", int64(MaxAllotment-1), int64(1))               // saturation
	f.Fuzz(func(t *testing.T, spec string, n, more int64) {
		s, err := ParseSlabs(spec)
		if err != nil {
			return
		}
		n, more = min(max(n, 0), MaxAllotment), min(max(more, 0), MaxAllotment)
		a, parts := s.Price(n)
		b, _ := s.Price(min(n+more, MaxAllotment))
		if a < 0 || b < 0 {
			t.Fatalf("negative price: %d, %d", a, b)
		}
		if b < a {
			t.Fatalf("price fell from %d to %d as usage grew from %d by %d", a, b, n, more)
		}
		var sum, credits int64
		for _, p := range parts {
			sum, credits = min(sum+p.Amount, MaxMicros), credits+p.Credits
		}
		if sum != a || credits != n {
			t.Fatalf("slabs sum to %d micros and %d credits, want %d and %d", sum, credits, a, n)
		}
	})
}
