package orgs

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
)

// Directory finds the org behind a presented API key or an org ID. It is built once by
// NewDirectory and never changes, so it is safe for concurrent use without locks; a config
// reload builds a new one. The zero Directory is empty.
type Directory struct {
	orgs []Org
	// byID holds positions in orgs rather than pointers, which the collector would scan.
	byID  map[string]int32
	byKey keyTable
}

// keyTable finds the org of a key digest: open addressing with linear probing over the keys
// of every org, held in one array. With a million orgs it takes a third of the memory of a
// map from digest to org, and holds no pointers.
type keyTable struct {
	keys  []Key   // every org's keys, in order; each org's Keys is a slice of it
	owner []int32 // owner[i]: position of the org of keys[i]
	slots []int32 // 1 + an index in keys, or 0 for none; a power of two at least twice len(keys)
	seed  maphash.Seed
}

func newKeyTable(n int) keyTable {
	size := 1
	if n > 0 {
		size = 1 << bits.Len(uint(2*n-1))
	}
	return keyTable{keys: make([]Key, 0, n), owner: make([]int32, 0, n), slots: make([]int32, size), seed: maphash.MakeSeed()}
}

// slot returns the slot holding sum, or the empty slot where it would go.
func (t *keyTable) slot(sum *[32]byte) *int32 {
	mask := uint64(len(t.slots) - 1)
	for h := maphash.Bytes(t.seed, sum[:]) & mask; ; h = (h + 1) & mask {
		if s := &t.slots[h]; *s == 0 || t.keys[*s-1].sum == *sum {
			return s
		}
	}
}

// find returns the position of the org whose key has the digest sum.
func (t *keyTable) find(sum [32]byte) (int32, bool) {
	if len(t.keys) == 0 {
		return 0, false
	}
	if s := *t.slot(&sum); s != 0 {
		return t.owner[s-1], true
	}
	return 0, false
}

// hold appends keys, the keys of the org at position org, and returns them as the table
// holds them; index then puts each in its slot.
func (t *keyTable) hold(org int32, keys []Key) []Key {
	from := len(t.keys)
	t.keys = append(t.keys, keys...)
	for range keys {
		t.owner = append(t.owner, org)
	}
	return t.keys[from:len(t.keys):len(t.keys)]
}

// index puts keys[i] in its slot, unless a key with the same digest has it: it then returns
// the position of that key's org.
func (t *keyTable) index(i int) (int32, bool) {
	s := t.slot(&t.keys[i].sum)
	if *s != 0 {
		return t.owner[*s-1], true
	}
	*s = int32(i + 1)
	return 0, false
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
		byKey: newKeyTable(nkeys),
	}
	var errs []error
	for i := range orgs {
		o := &d.orgs[i]
		*o = orgs[i]
		from := len(d.byKey.keys)
		o.Keys = d.byKey.hold(int32(i), o.Keys)
		errs = append(errs, check(o)...)
		// One map operation per org: a million of them is a good part of the start-up.
		n := len(d.byID)
		if d.byID[o.ID] = int32(i); len(d.byID) == n {
			first := slices.IndexFunc(d.orgs[:i], func(p Org) bool { return p.ID == o.ID })
			d.byID[o.ID] = int32(first)
			errs = append(errs, fmt.Errorf("org %q: listed twice (orgs %d and %d)", o.ID, first+1, i+1))
		}
		for j, k := range o.Keys {
			if k == (Key{}) {
				errs = append(errs, fmt.Errorf("org %q: key %d is not set (keys come from ParseKey)", o.ID, j+1))
				continue
			}
			other, dup := d.byKey.index(from + j)
			switch {
			case dup && int(other) == i:
				errs = append(errs, fmt.Errorf("org %q: key %d repeats an earlier key of the same org", o.ID, j+1))
			case dup:
				errs = append(errs, fmt.Errorf("orgs %q and %q share a key (key %d of %q)", d.orgs[other].ID, o.ID, j+1, o.ID))
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
	i, ok := d.byKey.find(sumOf(plain))
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
