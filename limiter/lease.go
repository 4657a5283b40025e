package limiter

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

var renewScript = mustScript("renew.lua")

// LeaseRenewer extends the concurrency leases of calls still in flight, so that a lease can
// be short (a dead replica's slots come back soon) while a long call keeps its slot.
// RedisStore (and so PipelinedStore) and MemoryStore implement it.
type LeaseRenewer interface {
	// Renew sets the expiry of each of the leases of key's org that is still live to now
	// plus Options.LeaseTTL, and returns how many it renewed. A lease that expired or was
	// released stays gone. A zero now means the store's own clock.
	Renew(ctx context.Context, key Key, leases []string, now time.Time) (int64, error)
}

var (
	_ LeaseRenewer = (*RedisStore)(nil)
	_ LeaseRenewer = (*PipelinedStore)(nil)
	_ LeaseRenewer = (*MemoryStore)(nil)
)

// Renew implements LeaseRenewer: one script call for all of the org's leases.
func (s *RedisStore) Renew(ctx context.Context, key Key, leases []string, now time.Time) (int64, error) {
	if len(leases) == 0 {
		return 0, nil
	}
	at := ""
	if !now.IsZero() {
		at = strconv.FormatInt(now.UnixMilli(), 10)
	}
	args := make([]any, 0, 2+len(leases))
	args = append(args, at, s.leaseTTLArg)
	for _, l := range leases {
		args = append(args, l)
	}
	n, err := renewScript.Run(ctx, s.client, key.redis().leases, args...).Int64()
	if err != nil {
		return 0, fmt.Errorf("renew %s: %w", key.Org, err)
	}
	return n, nil
}

// Renew implements LeaseRenewer.
func (s *MemoryStore) Renew(_ context.Context, key Key, leases []string, now time.Time) (int64, error) {
	w, ms := s.lock(key.Org, now)
	defer w.mu.Unlock()
	var n int64
	for _, l := range leases {
		for i, set := range [2]map[string]int64{w.leases, w.heavy} {
			if exp, ok := set[l]; ok && exp > ms {
				set[l] = ms + s.leaseTTL
				if i == 0 {
					n++
				}
			}
		}
	}
	return n, nil
}
