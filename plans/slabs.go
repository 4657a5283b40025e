package plans

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Slab is one tier of the graduated add-on price: the next Credits credits of a day (0 on the
// last slab: all the rest) cost PricePer1000 micro-dollars per 1,000 credits.
type Slab struct {
	// Credits is the size of the slab; 0 means unbounded (only the last slab).
	Credits int64
	// PricePer1000 is the price of 1,000 credits in micro-dollars (1 dollar = 1,000,000).
	PricePer1000 int64
}

// Slabs is a graduated price list: the first slab prices the first credits of a day, the
// next slab the credits after those, and so on. The last slab is unbounded.
type Slabs []Slab

// DefaultSlabs are the reference's add-on prices per 1,000 credits per day: the first 25,000
// at $0.14, the next 75,000 at $0.06, the next 150,000 at $0.05, everything above at $0.025.
var DefaultSlabs = Slabs{
	{Credits: 25_000, PricePer1000: 140_000},
	{Credits: 75_000, PricePer1000: 60_000},
	{Credits: 150_000, PricePer1000: 50_000},
	{Credits: 0, PricePer1000: 25_000},
}

// SlabCharge is what one slab contributes to a day's charge.
type SlabCharge struct {
	Credits      int64 `json:"credits"`
	PricePer1000 int64 `json:"price_per_1000_micros"`
	Amount       int64 `json:"amount_micros"`
}

// MaxMicros bounds every amount: prices and totals saturate here rather than overflow.
const MaxMicros int64 = 1<<62 - 1

// maxPricePer1000 is the largest accepted price: $1,000,000 per 1,000 credits.
const maxPricePer1000 int64 = 1_000_000_000_000

// Price returns what credits add-on credits consumed in one day cost, in micro-dollars, and
// the share of each slab (one entry per slab, in order, zero credits where a slab is not
// reached). Negative credits cost nothing.
//
// Rounding rule: each slab's amount is credits × price-per-1,000 / 1,000, rounded half up to
// the whole micro-dollar; the day's amount is the sum of the slab amounts. With the default
// prices no rounding ever happens (every price is a whole number of micro-dollars per
// credit).
func (s Slabs) Price(credits int64) (int64, []SlabCharge) {
	charges := make([]SlabCharge, len(s))
	left := max(credits, 0)
	var total int64
	for i, sl := range s {
		n := left
		if sl.Credits > 0 && n > sl.Credits {
			n = sl.Credits
		}
		left -= n
		amt := slabAmount(n, sl.PricePer1000)
		charges[i] = SlabCharge{Credits: n, PricePer1000: sl.PricePer1000, Amount: amt}
		total = min(total+amt, MaxMicros)
	}
	return total, charges
}

// slabAmount is n × p / 1000 rounded half up, saturating at MaxMicros. Split as n×(p/1000) +
// n×(p%1000)/1000 so that no product overflows for n up to MaxAllotment.
func slabAmount(n, p int64) int64 {
	if n <= 0 || p <= 0 {
		return 0
	}
	whole, frac := p/1000, p%1000
	var a int64
	if whole > 0 {
		if n > MaxMicros/whole {
			return MaxMicros
		}
		a = n * whole
	}
	n = min(n, MaxAllotment) // n×frac < 2^53 × 1000 fits int64
	return min(a+(n*frac+500)/1000, MaxMicros)
}

// ParseSlabs reads a price list in the CREDITGATE_ADDON_SLABS syntax: slabs separated by ',',
// each "credits:dollars" (dollars per 1,000 credits, up to six decimals), the last one
// "*:dollars" for everything above. Example (the default):
//
//	25000:0.14,75000:0.06,150000:0.05,*:0.025
func ParseSlabs(s string) (Slabs, error) {
	var (
		out  Slabs
		errs []error
	)
	parts := strings.Split(s, ",")
	for i, part := range parts {
		part = strings.TrimSpace(part)
		size, price, ok := strings.Cut(part, ":")
		size, price = strings.TrimSpace(size), strings.TrimSpace(price)
		last := i == len(parts)-1
		if !ok {
			errs = append(errs, fmt.Errorf("slab %d: want credits:dollars, got %q", i+1, part))
			continue
		}
		var sl Slab
		switch {
		case size == "*" && !last:
			errs = append(errs, fmt.Errorf("slab %d: only the last slab may be \"*\"", i+1))
			continue
		case size != "*" && last:
			errs = append(errs, fmt.Errorf("slab %d: the last slab must be \"*:dollars\" (everything above), got %q", i+1, part))
			continue
		case size != "*":
			n, err := strconv.ParseInt(size, 10, 64)
			if err != nil || n < 1 || n > MaxAllotment {
				errs = append(errs, fmt.Errorf("slab %d: credits must be an integer from 1 to %d, got %q", i+1, MaxAllotment, size))
				continue
			}
			sl.Credits = n
		}
		p, err := ParseMicros(price)
		if err != nil || p > maxPricePer1000 {
			errs = append(errs, fmt.Errorf("slab %d: price must be dollars per 1,000 credits such as 0.14 (at most six decimals), got %q", i+1, price))
			continue
		}
		sl.PricePer1000 = p
		out = append(out, sl)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// String formats s in the syntax ParseSlabs reads.
func (s Slabs) String() string {
	var b strings.Builder
	for i, sl := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		if sl.Credits == 0 {
			b.WriteByte('*')
		} else {
			b.WriteString(strconv.FormatInt(sl.Credits, 10))
		}
		b.WriteByte(':')
		b.WriteString(FormatMicros(sl.PricePer1000))
	}
	return b.String()
}

// ParseMicros reads a non-negative dollar amount with at most six decimals ("0.14", "2",
// "0.025") as micro-dollars, without floating point.
func ParseMicros(s string) (int64, error) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(frac) > 6 || strings.Trim(whole, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" {
		return 0, fmt.Errorf("not a dollar amount with at most six decimals: %q", s)
	}
	if len(whole) > 12 {
		return 0, fmt.Errorf("amount too large: %q", s)
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	var f int64
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	return w*1_000_000 + f, nil
}

// FormatMicros formats micro-dollars as dollars with the trailing zeros cut ("0.14", "8").
func FormatMicros(m int64) string {
	neg := m < 0
	if neg {
		m = -m
	}
	s := strconv.FormatInt(m/1_000_000, 10)
	if f := m % 1_000_000; f != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%06d", f), "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// AddonCap returns the largest add-on limit an org on edition e with free allotment free may
// set: min(500,000, e.Max − free), or 500,000 when the edition has no maximum; 0 when the
// edition sells no add-on credits.
func AddonCap(e Edition, free int64) int64 {
	const most = 500_000
	if !e.AddOns {
		return 0
	}
	if e.Max == 0 {
		return most
	}
	return min(most, max(e.Max-free, 0))
}
