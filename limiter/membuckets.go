package limiter

// memBuckets holds a MemoryStore window's credits by bucket. An org that calls now and then
// holds a short list of the buckets it used (16 bytes each); one that used more than half
// of the window's buckets holds a ring of counters, one per bucket of the window (8 bytes
// each: 11.5 KB for 24 hours of 1-minute buckets, where the list would take twice that),
// and goes back to the list when an eighth or fewer are left. Either way the buckets read
// the same: the store's semantics do not depend on the layout.
//
// Every bucket held starts within ringSlots buckets of the newest (expire and Spend keep
// it so, as the Redis ring needs too), so in the ring each has a slot of its own: its
// start, in buckets, modulo the number of slots.
type memBuckets struct {
	list []memBucket // ordered by start, oldest first; nil while the ring is used
	ring []int64     // credits by slot; nil while the list is used
	// The ring's oldest and newest bucket held, and how many it holds (slots not 0).
	tail, head int64
	n          int
}

type memBucket struct {
	start   int64 // unix ms
	credits int64
}

// empty reports whether no bucket is held.
func (m *memBuckets) empty() bool { return len(m.list) == 0 && m.n == 0 }

// oldest returns the start of the oldest bucket held; m must not be empty.
func (m *memBuckets) oldest() int64 {
	if m.ring != nil {
		return m.tail
	}
	return m.list[0].start
}

// newest returns the start of the newest bucket held; m must not be empty.
func (m *memBuckets) newest() int64 {
	if m.ring != nil {
		return m.head
	}
	return m.list[len(m.list)-1].start
}

// each calls f with every bucket held, oldest first, until f returns false.
func (m *memBuckets) each(width int64, f func(start, credits int64) bool) {
	if m.ring == nil {
		for _, b := range m.list {
			if !f(b.start, b.credits) {
				return
			}
		}
		return
	}
	if m.n == 0 {
		return
	}
	for s := m.tail; s <= m.head; s += width {
		if c := m.ring[m.slot(s, width)]; c != 0 && !f(s, c) {
			return
		}
	}
}

func (m *memBuckets) slot(start, width int64) int64 {
	n := int64(len(m.ring))
	return ((start/width)%n + n) % n
}

// add records credits in the bucket starting at b, of width ms; slots is the ring's size.
func (m *memBuckets) add(b, credits, width, slots int64) {
	if m.ring == nil {
		i := len(m.list)
		for i > 0 && m.list[i-1].start > b {
			i--
		}
		if i > 0 && m.list[i-1].start == b {
			m.list[i-1].credits += credits
			return
		}
		if int64(len(m.list)) < slots/2 {
			m.list = append(m.list, memBucket{})
			copy(m.list[i+1:], m.list[i:])
			m.list[i] = memBucket{start: b, credits: credits}
			return
		}
		m.toRing(width, slots)
	}
	i := m.slot(b, width)
	if m.ring[i] == 0 {
		if m.n == 0 {
			m.tail, m.head = b, b
		}
		m.tail, m.head = min(m.tail, b), max(m.head, b)
		m.n++
	}
	m.ring[i] += credits
}

// expire drops the buckets that start at or before cutoff and returns their credits.
func (m *memBuckets) expire(cutoff, width int64) int64 {
	var freed int64
	if m.ring == nil {
		n := 0
		for _, b := range m.list {
			if b.start > cutoff {
				break
			}
			freed += b.credits
			n++
		}
		if n > 0 {
			m.list = append(m.list[:0], m.list[n:]...)
		}
		return freed
	}
	if m.n == 0 || m.tail > cutoff {
		return 0
	}
	if m.head <= cutoff {
		for _, c := range m.ring {
			freed += c
		}
		clear(m.ring)
		m.n = 0
	} else {
		for ; m.tail <= cutoff; m.tail += width {
			i := m.slot(m.tail, width)
			if c := m.ring[i]; c != 0 {
				freed += c
				m.ring[i] = 0
				m.n--
			}
		}
		m.seekTail(width)
	}
	m.shrink(width)
	return freed
}

// held returns the credits of the bucket starting at b: 0 when it is not held.
func (m *memBuckets) held(b, width int64) int64 {
	if m.ring == nil {
		for i := len(m.list) - 1; i >= 0; i-- {
			if m.list[i].start == b {
				return m.list[i].credits
			}
		}
		return 0
	}
	if m.n == 0 || b < m.tail || b > m.head || b%width != 0 {
		return 0
	}
	return m.ring[m.slot(b, width)]
}

// take removes up to n credits from the bucket starting at b and returns how many it
// removed: none when the bucket is not held.
func (m *memBuckets) take(b, n, width int64) int64 {
	if m.ring == nil {
		for i := len(m.list) - 1; i >= 0; i-- {
			if m.list[i].start != b {
				continue
			}
			n = min(n, m.list[i].credits)
			if m.list[i].credits -= n; m.list[i].credits == 0 {
				m.list = append(m.list[:i], m.list[i+1:]...)
			}
			return n
		}
		return 0
	}
	if m.n == 0 || b < m.tail || b > m.head || b%width != 0 {
		return 0
	}
	i := m.slot(b, width)
	n = min(n, m.ring[i])
	if m.ring[i] -= n; n > 0 && m.ring[i] == 0 {
		m.n--
		switch {
		case m.n == 0:
		case b == m.tail:
			m.seekTail(width)
		case b == m.head:
			for m.ring[m.slot(m.head, width)] == 0 {
				m.head -= width
			}
		}
		m.shrink(width)
	}
	return n
}

// seekTail moves the ring's tail to its oldest bucket held; the ring holds one.
func (m *memBuckets) seekTail(width int64) {
	if m.n == 0 {
		return
	}
	for m.ring[m.slot(m.tail, width)] == 0 {
		m.tail += width
	}
}

// toRing moves the list into a ring of slots counters.
func (m *memBuckets) toRing(width, slots int64) {
	m.ring, m.n = make([]int64, slots), 0
	for _, b := range m.list {
		m.ring[m.slot(b.start, width)] = b.credits
		m.n++
	}
	if m.n > 0 {
		m.tail, m.head = m.list[0].start, m.list[len(m.list)-1].start
	}
	m.list = nil
}

// shrink moves the ring back into a list once it holds an eighth of its slots or fewer.
func (m *memBuckets) shrink(width int64) {
	if m.n > len(m.ring)/8 {
		return
	}
	list := make([]memBucket, 0, m.n)
	m.each(width, func(start, credits int64) bool {
		list = append(list, memBucket{start, credits})
		return true
	})
	m.list, m.ring, m.n = list, nil, 0
}
