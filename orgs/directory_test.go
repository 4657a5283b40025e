package orgs

import (
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestDirectory(t *testing.T) {
	orgs, err := Parse("acme:edition=crm-professional,users=20,keys=k1|k2;beta:limit=5000,keys=k3;" +
		"gamma:keys=sha256:" + hexOf(secret+"-gamma") + ";delta")
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDirectory(orgs)
	if err != nil {
		t.Fatal(err)
	}
	// The directory holds copies: changing the input afterwards shows nowhere.
	orgs[0].ID, orgs[0].Keys[0] = "changed", Key{}

	tests := []struct {
		name   string
		give   string
		want   string // org ID; "" for no match
		byID   bool
		wantOK bool
	}{
		{name: "first key", give: "k1", want: "acme", wantOK: true},
		{name: "second key", give: "k2", want: "acme", wantOK: true},
		{name: "other org", give: "k3", want: "beta", wantOK: true},
		{name: "key configured as sha256", give: secret + "-gamma", want: "gamma", wantOK: true},
		{name: "unknown key", give: "k4"},
		{name: "empty key", give: ""},
		{name: "key case matters", give: "K1"},
		{name: "key not trimmed", give: " k1"},
		{name: "digest is not a key", give: "sha256:" + hexOf(secret+"-gamma")},
		{name: "id is not a key", give: "acme"},
		{name: "by id", give: "acme", byID: true, want: "acme", wantOK: true},
		{name: "by id, org without keys", give: "delta", byID: true, want: "delta", wantOK: true},
		{name: "by id, unknown", give: "zeta", byID: true},
		{name: "by id, case matters", give: "ACME", byID: true},
		{name: "by id, a key is not an id", give: "k1", byID: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := d.ByKey
			if tt.byID {
				lookup = d.ByID
			}
			o, ok := lookup(tt.give)
			if ok != tt.wantOK {
				t.Fatalf("lookup(%q) ok = %v, want %v", tt.give, ok, tt.wantOK)
			}
			if !ok {
				if o != nil {
					t.Errorf("lookup(%q) = %+v with ok false, want nil", tt.give, o)
				}
				return
			}
			if o.ID != tt.want {
				t.Errorf("lookup(%q) = org %q, want %q", tt.give, o.ID, tt.want)
			}
		})
	}

	t.Run("fields kept", func(t *testing.T) {
		o, _ := d.ByID("acme")
		if o.Edition != "crm-professional" || o.Users != 20 || !o.Commercial || len(o.Keys) != 2 || o.Keys[0] != plainKey("k1") {
			t.Errorf("acme = %+v", o)
		}
	})
	t.Run("orgs in configured order", func(t *testing.T) {
		var ids []string
		for _, o := range d.Orgs() {
			ids = append(ids, o.ID)
		}
		if got, want := strings.Join(ids, ","), "acme,beta,gamma,delta"; got != want {
			t.Errorf("Orgs() = %s, want %s", got, want)
		}
		if d.Len() != 4 {
			t.Errorf("Len() = %d, want 4", d.Len())
		}
		if a, _ := d.ByID("beta"); d.Orgs()[1] != a {
			t.Error("Orgs() and ByID return different pointers for the same org")
		}
	})
	t.Run("zero directory is empty", func(t *testing.T) {
		var z Directory
		if _, ok := z.ByKey("k1"); ok {
			t.Error("ByKey found an org")
		}
		if _, ok := z.ByID("acme"); ok {
			t.Error("ByID found an org")
		}
		if z.Len() != 0 || len(z.Orgs()) != 0 {
			t.Error("zero Directory is not empty")
		}
	})
}

func TestNewDirectoryEmpty(t *testing.T) {
	d, err := NewDirectory(nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 0 {
		t.Errorf("Len() = %d, want 0", d.Len())
	}
}

func TestNewDirectoryErrors(t *testing.T) {
	k1, k2 := plainKey(secret+"1"), plainKey(secret+"2")
	tests := []struct {
		name string
		give []Org
		want []string
	}{
		{
			name: "duplicate id",
			give: []Org{{ID: "acme"}, {ID: "beta"}, {ID: "acme"}},
			want: []string{`org "acme": listed twice (orgs 1 and 3)`},
		},
		{
			name: "key shared by two orgs",
			give: []Org{{ID: "acme", Keys: []Key{k1}}, {ID: "beta", Keys: []Key{k2, k1}}},
			want: []string{`orgs "acme" and "beta" share a key (key 2 of "beta")`},
		},
		{
			name: "key repeated in one org",
			give: []Org{{ID: "acme", Keys: []Key{k1, k2, k1}}},
			want: []string{`org "acme": key 3 repeats an earlier key of the same org`},
		},
		{
			name: "zero key",
			give: []Org{{ID: "acme", Keys: []Key{k1, {}}}},
			want: []string{`org "acme": key 2 is not set (keys come from ParseKey)`},
		},
		{
			name: "invalid id",
			give: []Org{{ID: "a{b}"}, {ID: ""}},
			want: []string{
				`org "a{b}": id must match [A-Za-z0-9._-]{1,64}`,
				`org "": id must match [A-Za-z0-9._-]{1,64}`,
			},
		},
		{
			name: "field values",
			give: []Org{{
				ID: "acme", Edition: "CRM", Users: -1, Agents: -2, LightAgents: -3, Addon: -4, Legacy: -5,
				Concurrency: -6, MonthlyLimit: -7, Additional: -8,
			}},
			want: []string{
				`org "acme": field "edition": must be lower-case letters, digits and "-", got "CRM"`,
				`org "acme": field "users": must not be negative, got -1`,
				`org "acme": field "agents": must not be negative, got -2`,
				`org "acme": field "light_agents": must not be negative, got -3`,
				`org "acme": field "addon": must not be negative, got -4`,
				`org "acme": field "legacy": must not be negative, got -5`,
				`org "acme": field "concurrency": must not be negative, got -6`,
				`org "acme": field "monthly_limit": must not be negative, got -7`,
				`org "acme": field "additional": must not be negative, got -8`,
			},
		},
		{
			name: "limit set but zero",
			give: []Org{{ID: "acme", HasLimit: true}},
			want: []string{`org "acme": field "limit": must be at least 1, got 0`},
		},
		{
			name: "limit without HasLimit",
			give: []Org{{ID: "acme", Limit: 5}},
			want: []string{`org "acme": field "limit": is 5 but HasLimit is false`},
		},
		{
			name: "every problem is reported",
			give: []Org{
				{ID: "acme", Keys: []Key{k1}},
				{ID: "acme", Keys: []Key{k2}},
				{ID: "beta", Users: -1, Keys: []Key{k2}},
			},
			want: []string{
				`org "acme": listed twice (orgs 1 and 2)`,
				`org "beta": field "users": must not be negative, got -1`,
				`orgs "acme" and "beta" share a key (key 1 of "beta")`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := NewDirectory(tt.give)
			if err == nil {
				t.Fatalf("NewDirectory = %+v, want an error", d)
			}
			if d != nil {
				t.Error("NewDirectory returned a directory with an error")
			}
			assertMessages(t, err, tt.want)
		})
	}
}

// Keys of lengths that matter to the hashing: a []byte conversion of a key longer than 32
// bytes would allocate.
var lookupKeys = []string{
	"k-1",
	"org-99999-" + strings.Repeat("x", 40),
	strings.Repeat("long-key-", 30),
}

const manyOrgs = 100_000

// bigDirectory holds manyOrgs orgs with two keys each, including lookupKeys; built once.
var bigDirectory = sync.OnceValues(func() (*Directory, error) {
	orgs := make([]Org, manyOrgs)
	for i := range orgs {
		id := "org-" + strconv.Itoa(i)
		orgs[i] = Org{ID: id, Commercial: true, Keys: []Key{
			plainKey(id + "-" + strings.Repeat("x", 40)),
			plainKey("k-" + strconv.Itoa(i)),
		}}
	}
	orgs[7].Keys = append(orgs[7].Keys, plainKey(lookupKeys[2]))
	return NewDirectory(orgs)
})

func loadBig(tb testing.TB) *Directory {
	tb.Helper()
	d, err := bigDirectory()
	if err != nil {
		tb.Fatal(err)
	}
	if d.Len() != manyOrgs {
		tb.Fatalf("Len() = %d, want %d", d.Len(), manyOrgs)
	}
	return d
}

func TestByKeyAllocs(t *testing.T) {
	d := loadBig(t)
	for _, key := range append(lookupKeys, "unknown-key", "unknown-"+strings.Repeat("y", 100)) {
		allocs := testing.AllocsPerRun(1000, func() {
			d.ByKey(key)
		})
		if allocs != 0 {
			t.Errorf("ByKey with a %d-byte key: %v allocations, want 0", len(key), allocs)
		}
	}
	for _, key := range lookupKeys {
		if _, ok := d.ByKey(key); !ok {
			t.Errorf("ByKey(%d-byte key) found nothing", len(key))
		}
	}
}

func BenchmarkByKey(b *testing.B) {
	d := loadBig(b)
	for _, key := range append(lookupKeys, "unknown-key") {
		b.Run(strconv.Itoa(len(key))+"B", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d.ByKey(key)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				d.ByKey(lookupKeys[i%len(lookupKeys)])
				i++
			}
		})
	})
}
