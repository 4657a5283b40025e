package limiter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Usage notices. A threshold is a percent of an org's limit (add-ons included); the debit
// that makes the org's usage reach it queues one event in the store's outbox, in the same
// atomic step, and marks it fired. A fired threshold re-arms when usage falls back below it
// (credits freed, refunded), so the next crossing queues a new event. Every script that
// changes usage judges the thresholds through one helper, notices in lua/lib.lua; the
// memory store's twin is judgeNotices. The gateway delivers the events (ClaimNotices,
// FinishNotices): any live gateway, at least once, each event under its stable ID.

// MaxThresholds bounds the thresholds of an org.
const MaxThresholds = 10

// OutboxMax is how many events an org's outbox keeps at most: past it, the oldest go.
const OutboxMax = 256

var outboxMaxArg any = strconv.Itoa(OutboxMax)

// CheckThresholds returns list sorted, or an error when a threshold is outside 1..100, is
// given twice, or there are more than MaxThresholds.
func CheckThresholds(list []int64) ([]int64, error) {
	if len(list) > MaxThresholds {
		return nil, fmt.Errorf("at most %d thresholds, got %d", MaxThresholds, len(list))
	}
	out := slices.Clone(list)
	slices.Sort(out)
	for i, p := range out {
		if p < 1 || p > 100 {
			return nil, fmt.Errorf("a threshold is a percent from 1 to 100, got %d", p)
		}
		if i > 0 && out[i-1] == p {
			return nil, fmt.Errorf("threshold %d given twice", p)
		}
	}
	return out, nil
}

// formatThresholds is the thresholds in spend.lua's form, "50,80,100".
func formatThresholds(list []int64) string {
	var b strings.Builder
	for i, p := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(p, 10))
	}
	return b.String()
}

// parseThresholds reads formatThresholds' form; what is not a number is skipped.
func parseThresholds(s string) []int64 {
	var out []int64
	for f := range strings.SplitSeq(s, ",") {
		if p, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// WithNotices returns k whose debits queue a notice at each of thresholds (CheckThresholds'
// form: sorted percents of the limit), unless the store holds the org's own.
func (k Key) WithNotices(thresholds []int64) Key {
	k.Thresholds = thresholds
	k.notices = nil
	if len(thresholds) > 0 {
		k.notices = formatThresholds(thresholds)
	}
	return k
}

func (k Key) noticeArg() any {
	if k.notices == nil {
		return emptyArg
	}
	return k.notices
}

// Notice is one event of an org's outbox.
type Notice struct {
	// ID is the event's stable id: every delivery attempt carries it.
	ID  string
	Org string
	// Threshold is the percent of Limit that Used reached, at At.
	Threshold   int64
	Used, Limit int64
	At          time.Time
	// Window is the window the credits are counted in.
	Window time.Duration
	// Attempts is how many delivery attempts failed before this one.
	Attempts int64

	entry string // the outbox entry
}

// NoticeSettings are an org's notice settings set at run time, which override the
// configured ones field by field: a nil field is not overridden.
type NoticeSettings struct {
	// Thresholds are percents of the limit, sorted (CheckThresholds); empty: none.
	Thresholds *[]int64
	// URL and Secret are the webhook endpoint and its signing secret (whsec_...).
	URL, Secret *string
}

// NoticeState is what a store holds of an org's notices.
type NoticeState struct {
	// Settings are those set at run time (SetNotices).
	Settings NoticeSettings
	// Fired are the thresholds that fired and have not re-armed, ascending.
	Fired []int64
}

// NoticeStore holds usage notices: the settings set at run time, the thresholds fired, and
// the outbox. RedisStore (and PipelinedStore) and MemoryStore implement it alike.
type NoticeStore interface {
	// SetNotices stores org's settings; nil deletes them (the configured ones apply).
	SetNotices(ctx context.Context, org string, s *NoticeSettings) error
	// Notices reads org's settings and fired thresholds.
	Notices(ctx context.Context, org string) (NoticeState, error)
	// QueueNotices indexes org as having events to deliver, after a Spend queued some.
	QueueNotices(ctx context.Context, org string, now time.Time) error
	// SweepNotices looks through part of the store for outboxes that hold events but are
	// not indexed (their gateway died between the Spend and QueueNotices) and indexes them;
	// each call looks at a bounded part, and goes on where the last one ended.
	SweepNotices(ctx context.Context, now time.Time) error
	// ClaimNotices takes up to maxOrgs orgs whose events are due at now, for lease (no
	// claim, the owner's own included, takes them meanwhile unless settled), and returns up
	// to perOrg of each one's oldest events, grouped by org.
	ClaimNotices(ctx context.Context, owner string, now time.Time, lease time.Duration, maxOrgs, perOrg int) ([]Notice, error)
	// FinishNotices ends owner's claim on org: the events done (delivered, or given up on)
	// leave the outbox; failed, when not nil, counts one more failed attempt, and the org's
	// events wait until retryAt.
	FinishNotices(ctx context.Context, owner, org string, done []Notice, failed *Notice, retryAt, now time.Time) error
}

var (
	_ NoticeStore = (*RedisStore)(nil)
	_ NoticeStore = (*MemoryStore)(nil)
)

// noticeIndex is the Redis key of the orgs with events to deliver, scored by when they are
// due (unix ms). It is one key for all orgs, so no script touches it with an org's keys.
const noticeIndex = "cg:notices:due"

var (
	claimScript  = mustScript("outbox_claim.lua")
	finishScript = mustScript("outbox_finish.lua")
	unindexLua   = newScript(`if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1') == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end return 0`)
)

// commands is the client a RedisStore's notices need beyond scripts.
func (s *RedisStore) commands() (redis.Cmdable, error) {
	if c, ok := s.client.(redis.Cmdable); ok {
		return c, nil
	}
	return nil, errNoCommands
}

// SetNotices implements NoticeStore. The settings are kept without expiry.
func (s *RedisStore) SetNotices(ctx context.Context, org string, ns *NoticeSettings) error {
	c, err := s.commands()
	if err != nil {
		return err
	}
	keys := NewRedisKeys(org)
	key := keys.Notify
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		p.HDel(ctx, keys.Pos, "q") // spend.lua skips the notices of an org it found quiet
		if ns == nil {
			return nil
		}
		var fields []any
		if ns.Thresholds != nil {
			fields = append(fields, "thresholds", formatThresholds(*ns.Thresholds))
		}
		if ns.URL != nil {
			fields = append(fields, "url", *ns.URL)
		}
		if ns.Secret != nil {
			fields = append(fields, "secret", *ns.Secret)
		}
		if len(fields) > 0 {
			p.HSet(ctx, key, fields...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set notices %s: %w", org, err)
	}
	return nil
}

// Notices implements NoticeStore.
func (s *RedisStore) Notices(ctx context.Context, org string) (NoticeState, error) {
	c, err := s.commands()
	if err != nil {
		return NoticeState{}, err
	}
	keys := NewRedisKeys(org)
	p := c.Pipeline()
	set, fired := p.HGetAll(ctx, keys.Notify), p.HGetAll(ctx, keys.Fired)
	if _, err := p.Exec(ctx); err != nil {
		return NoticeState{}, fmt.Errorf("notices %s: %w", org, err)
	}
	var st NoticeState
	for k, v := range set.Val() {
		switch v := v; k { // v: each case keeps its own copy
		case "thresholds":
			list := parseThresholds(v)
			st.Settings.Thresholds = &list
		case "url":
			st.Settings.URL = &v
		case "secret":
			st.Settings.Secret = &v
		}
	}
	for k := range fired.Val() {
		if p, err := strconv.ParseInt(k, 10, 64); err == nil {
			st.Fired = append(st.Fired, p)
		}
	}
	slices.Sort(st.Fired)
	return st, nil
}

// QueueNotices implements NoticeStore.
func (s *RedisStore) QueueNotices(ctx context.Context, org string, now time.Time) error {
	c, err := s.commands()
	if err != nil {
		return err
	}
	if err := c.ZAdd(ctx, noticeIndex, redis.Z{Score: float64(now.UnixMilli()), Member: org}).Err(); err != nil {
		return fmt.Errorf("queue notices %s: %w", org, err)
	}
	return nil
}

// sweepPage is how many keys one SCAN page of SweepNotices asks a Redis master to look at,
// and sweepPages how many pages a run reads at most.
const (
	sweepPage  = 1000
	sweepPages = 64
)

// SweepNotices implements NoticeStore: up to sweepPages SCAN pages of outbox keys on each
// master, until the cursor comes back to the start; the cursor is kept for the next call.
func (s *RedisStore) SweepNotices(ctx context.Context, now time.Time) error {
	c, err := s.commands()
	if err != nil {
		return err
	}
	sweep := func(ctx context.Context, node redis.Cmdable, addr string) error {
		// Up to sweepPages pages a run, or the whole keyspace when it is smaller: a server of
		// 100,000 orgs (some 800,000 keys) is swept in about 13 runs.
		for range sweepPages {
			s.sweepMu.Lock()
			cursor := s.sweepAt[addr]
			s.sweepMu.Unlock()
			keys, next, err := node.ScanType(ctx, cursor, "cg:{*}:outbox", sweepPage, "stream").Result()
			if err != nil {
				return err
			}
			s.sweepMu.Lock()
			if s.sweepAt == nil {
				s.sweepAt = map[string]uint64{}
			}
			s.sweepAt[addr] = next
			s.sweepMu.Unlock()
			for _, k := range keys {
				org, ok := strings.CutPrefix(k, "cg:{")
				if org, ok = strings.CutSuffix(org, "}:outbox"); !ok || org == "" {
					continue
				}
				if n, err := node.XLen(ctx, k).Result(); err != nil || n == 0 {
					continue
				}
				// NX: an org indexed already keeps its due time (a backoff, a lease).
				if err := c.ZAddNX(ctx, noticeIndex, redis.Z{Score: float64(now.UnixMilli()), Member: org}).Err(); err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
		}
		return nil
	}
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return sweep(ctx, m, m.Options().Addr) })
	} else {
		err = sweep(ctx, c, "")
	}
	if err != nil {
		return fmt.Errorf("sweep notices: %w", err)
	}
	return nil
}

// ClaimNotices implements NoticeStore. The org stays indexed, due when the lease ends: if
// its owner dies, another gateway claims it then.
func (s *RedisStore) ClaimNotices(ctx context.Context, owner string, now time.Time, lease time.Duration, maxOrgs, perOrg int) ([]Notice, error) {
	c, err := s.commands()
	if err != nil {
		return nil, err
	}
	nowMs := now.UnixMilli()
	due, err := c.ZRangeByScoreWithScores(ctx, noticeIndex, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(nowMs, 10), Count: int64(maxOrgs)}).Result()
	if err != nil {
		return nil, fmt.Errorf("claim notices: %w", err)
	}
	var out []Notice
	for _, z := range due {
		org, _ := z.Member.(string)
		if !validOrgKey(org) {
			c.ZRem(ctx, noticeIndex, z.Member)
			continue
		}
		keys := NewRedisKeys(org)
		reply, err := claimScript.Run(ctx, s.client, keys.outbox, owner, lease.Milliseconds(), perOrg, nowMs).Slice()
		if err != nil {
			return out, fmt.Errorf("claim notices %s: %w", org, err)
		}
		status, at, events, err := decodeClaimReply(reply)
		if err != nil {
			return out, fmt.Errorf("claim notices %s: %w", org, err)
		}
		switch status {
		case claimEmpty:
			// Unindexed unless a Spend indexed it again since (its score changed).
			unindexLua.Run(ctx, s.client, []string{noticeIndex}, org, int64(z.Score))
			continue
		case claimLater:
			c.ZAddXX(ctx, noticeIndex, redis.Z{Score: float64(at), Member: org})
			continue
		}
		c.ZAddXX(ctx, noticeIndex, redis.Z{Score: float64(nowMs + lease.Milliseconds()), Member: org})
		for _, e := range events {
			e.Org = org
			e.setID()
			out = append(out, e)
		}
	}
	return out, nil
}

// validOrgKey reports whether org can name an org's keys (one hash tag).
func validOrgKey(org string) bool {
	return org != "" && !strings.ContainsAny(org, "{}")
}

// Statuses of claim.lua.
const (
	claimEmpty   = 0 // no events: the org leaves the index
	claimLater   = 2 // not due (backoff) or leased by another until the time replied
	claimClaimed = 1
)

// decodeClaimReply reads claim.lua's reply: {status, at_ms, {id, p, used, limit, at, w,
// tries}...}, checking every type.
func decodeClaimReply(reply []any) (status, at int64, events []Notice, err error) {
	if len(reply) < 2 {
		return 0, 0, nil, fmt.Errorf("script replied %d values, want at least 2", len(reply))
	}
	status, ok1 := reply[0].(int64)
	at, ok2 := reply[1].(int64)
	if !ok1 || !ok2 {
		return 0, 0, nil, fmt.Errorf("unexpected script reply %v", reply)
	}
	for _, r := range reply[2:] {
		f, ok := r.([]any)
		if !ok || len(f) != 7 {
			return 0, 0, nil, fmt.Errorf("unexpected event %v", r)
		}
		var v [6]int64
		id, _ := f[0].(string)
		for i := range v {
			str, _ := f[i+1].(string)
			if v[i], err = strconv.ParseInt(str, 10, 64); err != nil {
				return 0, 0, nil, fmt.Errorf("event %s: field %d: %w", id, i+1, err)
			}
		}
		events = append(events, Notice{entry: id, Threshold: v[0], Used: v[1], Limit: v[2],
			At: time.UnixMilli(v[3]), Window: time.Duration(v[4]) * time.Millisecond, Attempts: v[5]})
	}
	return status, at, events, nil
}

// FinishNotices implements NoticeStore.
func (s *RedisStore) FinishNotices(ctx context.Context, owner, org string, done []Notice, failed *Notice, retryAt, now time.Time) error {
	c, err := s.commands()
	if err != nil {
		return err
	}
	args := []any{owner, "", 0}
	if failed != nil {
		args[1], args[2] = failed.entry, retryAt.UnixMilli()
	}
	for _, n := range done {
		args = append(args, n.entry)
	}
	keys := NewRedisKeys(org)
	left, err := finishScript.Run(ctx, s.client, keys.outbox, args...).Int64()
	if err != nil {
		return fmt.Errorf("finish notices %s: %w", org, err)
	}
	due := now.UnixMilli()
	switch {
	case failed != nil:
		due = retryAt.UnixMilli()
	case left == 0:
		// The claim's score; a Spend that indexed the org since changed it.
		score, err := c.ZScore(ctx, noticeIndex, org).Result()
		if err == nil {
			err = unindexLua.Run(ctx, s.client, []string{noticeIndex}, org, int64(score)).Err()
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("finish notices %s: %w", org, err)
		}
		// The outbox and the index live in different slots, so the two steps above are not
		// one: an event queued, and indexed by its gateway, between them is unindexed with
		// the org. The outbox is read again after, and an org that holds events is indexed
		// again.
		n, err := c.XLen(ctx, keys.Outbox).Result()
		if err != nil {
			return fmt.Errorf("finish notices %s: %w", org, err)
		}
		if n == 0 {
			return nil
		}
	}
	if err := c.ZAdd(ctx, noticeIndex, redis.Z{Score: float64(due), Member: org}).Err(); err != nil {
		return fmt.Errorf("finish notices %s: %w", org, err)
	}
	return nil
}

// noticeID is the stable id of an event: its org and its entry in the org's outbox.
func noticeID(org, entry string) string { return "evt_" + org + "_" + entry }

// setID fills in n.ID from its org and entry (the stores' one form).
func (n *Notice) setID() { n.ID = noticeID(n.Org, n.entry) }

// memOutbox is an org's outbox in a MemoryStore.
type memOutbox struct {
	events     []Notice
	owner      string
	leaseUntil int64 // unix ms
	next       int64 // unix ms: no claim before (backoff)
}

// memNotices is the notice side of a MemoryStore.
type memNotices struct {
	mu       sync.Mutex
	settings map[string]NoticeSettings
	outboxes map[string]*memOutbox
	seq      int64
	// anySet is whether settings were ever stored: until then a debit need not take mu,
	// which every org's calls share.
	anySet atomic.Bool
}

// thresholds returns org's thresholds: its settings', else the key's.
func (n *memNotices) thresholds(key Key) []int64 {
	if !n.anySet.Load() {
		return key.Thresholds
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if st, ok := n.settings[key.Org]; ok && st.Thresholds != nil {
		return *st.Thresholds
	}
	return key.Thresholds
}

// judgeNotices is lib.lua's notices for a MemoryStore window w (locked) of org: limit < 0
// only re-arms.
func (s *MemoryStore) judgeNotices(w *memWindow, org string, limit int64, thresholds []int64, now int64) int64 {
	if len(w.fired) == 0 && (limit < 0 || len(thresholds) == 0) {
		return 0
	}
	var queued int64
	judged := map[int64]int64{}
	if limit >= 0 {
		for _, p := range thresholds {
			level := max(1, (p*limit+99)/100)
			if _, ok := w.fired[p]; ok {
				judged[p] = level
			} else if w.used >= level {
				if w.fired == nil {
					w.fired = map[int64]int64{}
				}
				w.fired[p] = level
				s.notices.add(Notice{Org: org, Threshold: p, Used: w.used, Limit: limit, At: time.UnixMilli(now),
					Window: time.Duration(s.window) * time.Millisecond})
				queued++
			}
		}
	}
	for p, level := range w.fired {
		if l, ok := judged[p]; ok {
			level = l
		}
		if w.used < level {
			delete(w.fired, p)
		}
	}
	return queued
}

// add appends n to its org's outbox, as XADD with MAXLEN OutboxMax.
func (n *memNotices) add(e Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.outboxes == nil {
		n.outboxes = map[string]*memOutbox{}
	}
	o := n.outboxes[e.Org]
	if o == nil {
		o = &memOutbox{}
		n.outboxes[e.Org] = o
	}
	n.seq++
	e.entry = strconv.FormatInt(e.At.UnixMilli(), 10) + "-" + strconv.FormatInt(n.seq, 10)
	o.events = append(o.events, e)
	if len(o.events) > OutboxMax {
		o.events = slices.Delete(o.events, 0, len(o.events)-OutboxMax)
	}
}

// SetNotices implements NoticeStore.
func (s *MemoryStore) SetNotices(_ context.Context, org string, ns *NoticeSettings) error {
	n := &s.notices
	n.mu.Lock()
	defer n.mu.Unlock()
	if ns == nil {
		delete(n.settings, org)
		return nil
	}
	if n.settings == nil {
		n.settings = map[string]NoticeSettings{}
	}
	c := *ns
	if c.Thresholds != nil {
		list := slices.Clone(*c.Thresholds)
		c.Thresholds = &list
	}
	n.settings[org] = c
	n.anySet.Store(true)
	return nil
}

// Notices implements NoticeStore.
func (s *MemoryStore) Notices(_ context.Context, org string) (NoticeState, error) {
	var st NoticeState
	s.notices.mu.Lock()
	st.Settings = s.notices.settings[org]
	s.notices.mu.Unlock()
	s.mu.RLock()
	w := s.windows[org]
	s.mu.RUnlock()
	if w != nil {
		w.mu.Lock()
		for p := range w.fired {
			st.Fired = append(st.Fired, p)
		}
		w.mu.Unlock()
	}
	slices.Sort(st.Fired)
	return st, nil
}

// QueueNotices implements NoticeStore: a MemoryStore's outboxes are their own index.
func (s *MemoryStore) QueueNotices(context.Context, string, time.Time) error { return nil }

// SweepNotices implements NoticeStore: nothing is ever lost from the index in memory.
func (s *MemoryStore) SweepNotices(context.Context, time.Time) error { return nil }

// ClaimNotices implements NoticeStore.
func (s *MemoryStore) ClaimNotices(_ context.Context, owner string, now time.Time, lease time.Duration, maxOrgs, perOrg int) ([]Notice, error) {
	n := &s.notices
	n.mu.Lock()
	defer n.mu.Unlock()
	ms := now.UnixMilli()
	orgs := make([]string, 0, len(n.outboxes))
	for org, o := range n.outboxes {
		if len(o.events) == 0 {
			delete(n.outboxes, org)
			continue
		}
		if o.next <= ms && (o.owner == "" || o.leaseUntil <= ms) {
			orgs = append(orgs, org)
		}
	}
	slices.Sort(orgs)
	var out []Notice
	for _, org := range orgs[:min(len(orgs), maxOrgs)] {
		o := n.outboxes[org]
		o.owner, o.leaseUntil = owner, ms+lease.Milliseconds()
		for _, e := range o.events[:min(len(o.events), perOrg)] {
			e.setID()
			out = append(out, e)
		}
	}
	return out, nil
}

// FinishNotices implements NoticeStore.
func (s *MemoryStore) FinishNotices(_ context.Context, owner, org string, done []Notice, failed *Notice, retryAt, _ time.Time) error {
	n := &s.notices
	n.mu.Lock()
	defer n.mu.Unlock()
	o := n.outboxes[org]
	if o == nil {
		return nil
	}
	o.events = slices.DeleteFunc(o.events, func(e Notice) bool {
		return slices.ContainsFunc(done, func(d Notice) bool { return d.entry == e.entry })
	})
	if failed != nil {
		for i := range o.events {
			if o.events[i].entry == failed.entry {
				o.events[i].Attempts++
			}
		}
		o.next = retryAt.UnixMilli()
	}
	if o.owner == owner {
		o.owner, o.leaseUntil = "", 0
	}
	return nil
}
