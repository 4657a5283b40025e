package plans

import (
	"strings"
	"testing"
)

func TestParseEditions(t *testing.T) {
	s, err := ParseEditions([]byte(`
editions:
  - name: CRM-Professional
    per_seat: 600
  - name: partner-gold
    kind: desk
    base: 20000
    per_seat: 800
    concurrency: 12
    addons: true
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give  string
		seats Seats
		want  int64
	}{
		{"crm-professional", Seats{Users: 10}, 10_000 + 10*600}, // changed field
		{"crm-professional", Seats{Users: 10_000}, 500_000},     // unchanged max
		{"crm-enterprise", Seats{Users: 10}, 15_000 + 10*1_000}, // untouched edition
		{"partner-gold", Seats{Agents: 3, LightAgents: 9}, 20_000 + 3*800},
	}
	for _, tt := range tests {
		e, ok := s.Lookup(tt.give)
		if !ok {
			t.Fatalf("Lookup(%q): missing", tt.give)
		}
		if got := e.Allotment(tt.seats); got != tt.want {
			t.Errorf("%s %+v: got %d, want %d", tt.give, tt.seats, got, tt.want)
		}
	}
	if e, _ := s.Lookup("partner-gold"); e.Concurrency != 12 || !e.AddOns || e.Name != "partner-gold" {
		t.Errorf("partner-gold = %+v", e)
	}
	// The built-in table is not changed by a parse.
	if e, _ := LookupEdition("crm-professional"); e.PerSeat != 500 {
		t.Errorf("built-in crm-professional changed: %+v", e)
	}
	if _, ok := s.Lookup("crm-free"); !ok {
		t.Error("built-in crm-free lost")
	}
}

func TestParseEditionsErrors(t *testing.T) {
	tests := []struct {
		name, give string
		want       []string
	}{
		{"not a mapping", `[1]`, []string{"line 1: want a mapping"}},
		{"no editions", `name: x`, []string{`line 1: unknown field "name"`, "no editions field"}},
		{"new without kind", "editions:\n  - name: gold\n    base: 5\n", []string{`line 2: edition "gold": kind: required`}},
		{"bad kind", "editions:\n  - name: gold\n    kind: crmx\n    base: 5\n", []string{`line 3: edition "gold": kind: want crm, desk or monthly, got "crmx"`}},
		{"negative", "editions:\n  - name: crm-free\n    base: -1\n", []string{`line 3: edition "crm-free": base: want 0 to`}},
		{"string count", "editions:\n  - name: crm-free\n    base: lots\n", []string{`line 3: edition "crm-free": base: want an integer, got "lots"`}},
		{"unknown field", "editions:\n  - name: crm-free\n    users: 3\n", []string{`line 3: edition "crm-free": unknown field "users"`}},
		{"twice", "editions:\n  - name: crm-free\n  - name: CRM-FREE\n", []string{`line 3: edition "crm-free": named twice (also on line 2)`}},
		{"no name", "editions:\n  - base: 3\n", []string{"line 2: editions[0]: name: required"}},
		{"max below base", "editions:\n  - name: crm-free\n    max: 10\n", []string{`edition "crm-free": max (10) is below base (5000)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEditions([]byte(tt.give))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}
