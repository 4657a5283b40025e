package limiter

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Settler corrects a debit to the cost its call settled on once the upstream answered (a
// cost-table rule that settles from the response). RedisStore, PipelinedStore and
// MemoryStore implement it, with the same semantics (package storetest checks them).
type Settler interface {
	// Settle changes the debit of the allowed Decision d (found by d.Call) to cost credits:
	// the difference is debited into, or given back from, the debit's own bucket, with the
	// usage by rule and the add-on meter (the debit's add-on part becomes the part of the
	// window's total above the free allotment, as Spend meters it), atomically. An extra debit
	// applies whatever the limit. A debit whose bucket has left the window is settled on the
	// meter only: the credits of the reservation that were free stay free, and any settled
	// credits beyond them are add-on credits.
	//
	// It applies once: the debit's record then holds the settled cost and says it is settled,
	// so Settle sent again does nothing (whatever its cost), and Refund gives back the settled
	// cost. A refunded or compensated call is
	// not settled. A call whose record is gone (older than Options.CallTTL) is settled by d's
	// values, and recorded.
	Settle(ctx context.Context, key Key, d Decision, cost int64, now time.Time) (Settlement, error)
}

// Settlement is what Settle did.
type Settlement struct {
	// Applied is false when there was nothing to do: the debit was settled already (a
	// resend), or refunded or compensated, or d was no debit.
	Applied bool
	// Cost is the call's cost now: the settled cost (0 for a call refunded or compensated).
	Cost int64
	// Moved is the credits debited into the window (above 0) or given back (below 0); 0 when
	// the debit's bucket had left the window.
	Moved int64
	// Metered is the add-on credits metered (above 0) or taken off the meter (below 0).
	Metered int64
	// Used is the credits the window holds afterwards.
	Used int64
	// Notices is how many usage notices the settle queued: an extra debit can cross a
	// threshold (the caller then has the org's outbox delivered, as after a Spend).
	Notices int64
}

var (
	_ Settler = (*RedisStore)(nil)
	_ Settler = (*MemoryStore)(nil)
)

var settleScript = mustScript("settle.lua")

// Settle implements Settler: one run of settle.lua.
func (s *RedisStore) Settle(ctx context.Context, key Key, d Decision, cost int64, now time.Time) (Settlement, error) {
	if cost < 0 {
		return Settlement{}, fmt.Errorf("settle %s: negative cost %d", key.Org, cost)
	}
	if d.Call == "" {
		return Settlement{}, nil // no record to find, nor to write
	}
	reserved := d.Cost
	if !d.Allowed {
		reserved = 0
	}
	keys, addons := key.redis().settle, key.addonArgs()
	cmd := settleScript.command(keys, 7+2+len(addons)+len(s.settleStore)+1)
	cmd = append(cmd, cost, reserved, strconv.FormatInt(d.Bucket, 10), d.Addon, debitDay(d), d.Call, msArg(now)) // the call
	cmd = append(cmd, key.Rule, key.limitValue())                                                                // the key
	cmd = append(cmd, addons...)                                                                                 // its add-ons
	cmd = append(cmd, s.settleStore...)                                                                          // the store
	cmd = append(cmd, key.noticeArg())                                                                           // its notices
	v, err := settleScript.runInts(ctx, s.client, keys, cmd)
	if err != nil {
		return Settlement{}, fmt.Errorf("settle %s: %w", key.Org, err)
	}
	if len(v) != 6 {
		return Settlement{}, fmt.Errorf("settle %s: script replied %d values, want 6", key.Org, len(v))
	}
	return Settlement{Applied: v[0] == 1, Cost: v[1], Moved: v[2], Metered: v[3], Used: v[4], Notices: v[5]}, nil
}

// Settle implements Settler, as settle.lua does.
func (s *MemoryStore) Settle(_ context.Context, key Key, d Decision, cost int64, now time.Time) (Settlement, error) {
	if cost < 0 {
		return Settlement{}, fmt.Errorf("settle %s: negative cost %d", key.Org, cost)
	}
	if d.Call == "" {
		return Settlement{}, nil
	}
	w, ms := s.lock(key.Org, now)
	defer w.mu.Unlock()
	r, ok := w.calls[d.Call]
	switch {
	case ok && r.state != 'd':
		return Settlement{}, nil // refunded or compensated
	case !ok && (!d.Allowed || d.Cost <= 0):
		return Settlement{}, nil
	case !ok:
		r = callRecord{state: 'd', bucket: d.Bucket, cost: d.Cost, addon: d.Addon, day: debitDay(d)}
	}
	w.used -= w.buckets.expire(ms-s.window-s.bucket, s.bucket) // what spend would expire first: no longer held
	if r.settled {
		return Settlement{Cost: r.cost, Used: w.used}, nil // a resend
	}

	// The window: the difference goes into the debit's bucket, if it is still there.
	var moved int64
	before := w.used
	live := w.buckets.held(r.bucket, s.bucket) > 0
	if live {
		switch moved = cost - r.cost; {
		case moved > 0:
			w.buckets.add(r.bucket, moved, s.bucket, ringSlots(s.window, s.bucket))
			s.record(w, key.Rule, r.bucket, moved, ms)
		case moved < 0:
			moved = -w.buckets.take(r.bucket, -moved, s.bucket)
			s.unrecord(w, key.Rule, r.bucket, -moved)
		}
		w.used += moved
	}

	// Billing, as settle.lua meters it.
	addon := r.addon
	if key.addons() {
		if live {
			switch change := aboveFree(key.Free, before, w.used); {
			case change > 0:
				w.meterDay(r.day, change)
				addon += change
			case change < 0:
				own := min(-change, r.addon)
				w.unmeterDrop(r.day, -change, r.addon)
				addon -= own
			}
		} else {
			addon = max(0, cost-(r.cost-r.addon))
			if addon > r.addon {
				w.meterDay(r.day, addon-r.addon)
			} else {
				w.unmeterDay(r.day, r.addon-addon)
			}
		}
	}
	var queued int64
	if moved != 0 { // as settle.lua: the notices follow the window's total
		queued = s.judgeNotices(w, key.Org, w.limitFor(key), s.notices.thresholds(key), ms)
	}
	w.putCall(d.Call, callRecord{state: 'd', settled: true, bucket: r.bucket, cost: cost, addon: addon, day: r.day, expires: ms + s.callTTL})
	return Settlement{Applied: true, Cost: cost, Moved: moved, Metered: addon - r.addon, Used: w.used, Notices: queued}, nil
}
