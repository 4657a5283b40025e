package orgs

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Directory finds the org behind a presented API key or an org ID. It is built once by
// NewDirectory and never changes, so it is safe for concurrent use without locks; a config
// reload builds a new one. The zero Directory is empty.
type Directory struct {
	orgs []Org
	// The indexes hold positions in orgs rather than pointers: with a million orgs, maps
	// without pointers are maps the garbage collector never scans.
	byID  map[string]int32
	byKey map[[32]byte]int32 // SHA-256 of the plain key → position of its org
}

// NewDirectory checks orgs and indexes them by ID and key. It copies orgs, so later changes
// to them do not show. Every problem is reported, joined: an invalid ID or field value (for
// orgs built by other loaders than Parse), an ID listed twice, a key listed twice, a key
// shared by two orgs (the error names both orgs, never the key) and a zero Key.
func NewDirectory(orgs []Org) (*Directory, error) {
	nkeys := 0
	for i := range orgs {
		nkeys += len(orgs[i].Keys)
	}
	if len(orgs) > math.MaxInt32 {
		return nil, fmt.Errorf("%d orgs: at most %d", len(orgs), math.MaxInt32)
	}
	d := &Directory{
		orgs:  make([]Org, len(orgs)),
		byID:  make(map[string]int32, len(orgs)),
		byKey: make(map[[32]byte]int32, nkeys),
	}
	var errs []error
	posOf := make(map[string]int, len(orgs)) // org ID → 1-based position
	for i := range orgs {
		o := &d.orgs[i]
		*o = orgs[i]
		o.Keys = slices.Clone(o.Keys)
		errs = append(errs, check(o)...)
		if first, dup := posOf[o.ID]; dup {
			errs = append(errs, fmt.Errorf("org %q: listed twice (orgs %d and %d)", o.ID, first, i+1))
		} else {
			posOf[o.ID] = i + 1
			d.byID[o.ID] = int32(i)
		}
		for j, k := range o.Keys {
			other, dup := d.byKey[k.sum]
			switch {
			case k == (Key{}):
				errs = append(errs, fmt.Errorf("org %q: key %d is not set (keys come from ParseKey)", o.ID, j+1))
			case dup && int(other) == i:
				errs = append(errs, fmt.Errorf("org %q: key %d repeats an earlier key of the same org", o.ID, j+1))
			case dup:
				errs = append(errs, fmt.Errorf("orgs %q and %q share a key (key %d of %q)", d.orgs[other].ID, o.ID, j+1, o.ID))
			default:
				d.byKey[k.sum] = int32(i)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

// check reports the field values of o that Parse would have rejected.
func check(o *Org) []error {
	var errs []error
	if !validID(o.ID) {
		errs = append(errs, fmt.Errorf("org %s: id must match %s", quote(o.ID), idPattern))
	}
	if !validEdition(o.Edition) {
		errs = append(errs, fmt.Errorf(`org %s: field "edition": must be lower-case letters, digits and "-", got %s`, quote(o.ID), quote(o.Edition)))
	}
	for _, name := range fieldNames {
		if p := intField(o, name); p != nil && *p < 0 {
			errs = append(errs, fmt.Errorf("org %s: field %q: must not be negative, got %d", quote(o.ID), name, *p))
		}
	}
	switch {
	case o.HasLimit && o.Limit < 1:
		errs = append(errs, fmt.Errorf(`org %s: field "limit": must be at least 1, got %d`, quote(o.ID), o.Limit))
	case !o.HasLimit && o.Limit != 0:
		errs = append(errs, fmt.Errorf(`org %s: field "limit": is %d but HasLimit is false`, quote(o.ID), o.Limit))
	}
	return errs
}

// ByKey returns the org whose configured key is plain, the key as presented by a caller. It
// hashes the key and makes one map lookup, without allocating. An empty key finds nothing.
// The returned Org belongs to the directory and must not be modified.
func (d *Directory) ByKey(plain string) (*Org, bool) {
	i, ok := d.IndexByKey(plain)
	if !ok {
		return nil, false
	}
	return &d.orgs[i], true
}

// IndexByKey is ByKey, giving the org's position in the directory (see At) instead.
func (d *Directory) IndexByKey(plain string) (int, bool) {
	if plain == "" {
		return 0, false
	}
	i, ok := d.byKey[sumOf(plain)]
	return int(i), ok
}

// ByID returns the org with the given ID. The returned Org belongs to the directory and must
// not be modified.
func (d *Directory) ByID(id string) (*Org, bool) {
	i, ok := d.IndexByID(id)
	if !ok {
		return nil, false
	}
	return &d.orgs[i], true
}

// IndexByID is ByID, giving the org's position in the directory (see At) instead.
func (d *Directory) IndexByID(id string) (int, bool) {
	i, ok := d.byID[id]
	return int(i), ok
}

// At returns the org at position i (0 ≤ i < Len), in the order given to NewDirectory. The
// returned Org belongs to the directory and must not be modified.
func (d *Directory) At(i int) *Org { return &d.orgs[i] }

// Orgs returns every org in the order given to NewDirectory, in a new slice. The Orgs belong
// to the directory and must not be modified.
func (d *Directory) Orgs() []*Org {
	out := make([]*Org, len(d.orgs))
	for i := range d.orgs {
		out[i] = &d.orgs[i]
	}
	return out
}

// Len returns the number of orgs.
func (d *Directory) Len() int { return len(d.orgs) }
