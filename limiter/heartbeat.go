package limiter

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

var heartbeatScript = mustScript("heartbeat.lua")

// HeartbeatKey is the sorted set of the gateways sharing a Redis, scored by when their
// heartbeat expires.
const HeartbeatKey = "cg:gateways"

// Heartbeater tells the store a gateway is alive and how many are: a gateway that cannot
// reach the store limits on its own to its share of each org's credits.
type Heartbeater interface {
	// Heartbeat records that gateway id is alive for ttl, and returns how many gateways
	// are (this one included).
	Heartbeat(ctx context.Context, id string, ttl time.Duration) (int64, error)
}

var (
	_ Heartbeater = (*RedisStore)(nil)
	_ Heartbeater = (*MemoryStore)(nil)
)

// Heartbeat implements Heartbeater.
func (s *RedisStore) Heartbeat(ctx context.Context, id string, ttl time.Duration) (int64, error) {
	n, err := heartbeatScript.Run(ctx, s.client, []string{HeartbeatKey}, id, strconv.FormatInt(ttl.Milliseconds(), 10)).Int64()
	if err != nil {
		return 0, fmt.Errorf("heartbeat: %w", err)
	}
	return n, nil
}

// Heartbeat implements Heartbeater: a memory store serves one gateway.
func (s *MemoryStore) Heartbeat(context.Context, string, time.Duration) (int64, error) { return 1, nil }
