package limiter

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Store = (*PipelinedStore)(nil)

// PipelinedStore is a RedisStore whose concurrent Spend calls share round trips: a call made
// while earlier ones are on the wire waits for the next flush, which sends every waiting call
// as one pipeline of EVALSHAs. Nothing waits for company: an idle store flushes a lone call
// at once, so batching costs no latency, and under load one read and one write carry many
// decisions (fewer system calls on both sides, the ceiling of one Redis rises).
//
// Exactness is the script's: each EVALSHA runs atomically, in the order sent, exactly as if
// sent alone. Nothing is retried; a call whose reply is lost is reported as an error, as with
// RedisStore. A NOSCRIPT reply (script cache flushed) means the call did not run; it is then
// run alone through EVAL, once.
//
// Refund and Release are rare and go through the RedisStore directly.
type PipelinedStore struct {
	*RedisStore
	pipe    func() redis.Pipeliner
	queue   chan *spendCall
	maxSize int
}

type spendCall struct {
	ctx   context.Context
	keys  *RedisKeys
	cmd   []any  // spend.lua's EVALSHA
	lease string // the lease the call takes, if any
	reply []int64
	err   error
	done  chan struct{}
}

var spendCalls = sync.Pool{New: func() any { return &spendCall{done: make(chan struct{}, 1)} }}

// NewPipelinedStore returns s with pipelined Spend calls: up to maxBatch decisions per round
// trip, with flushers round trips in flight at once (each on its own connection). The
// client s was built on must offer pipelines (*redis.Client, *redis.ClusterClient and
// *redis.Ring do). The flushers stop when ctx is done.
func NewPipelinedStore(ctx context.Context, s *RedisStore, maxBatch, flushers int) (*PipelinedStore, error) {
	p, ok := s.client.(interface{ Pipeline() redis.Pipeliner })
	if !ok {
		return nil, fmt.Errorf("pipelined store: %T offers no pipelines", s.client)
	}
	if maxBatch < 1 || flushers < 1 {
		return nil, fmt.Errorf("pipelined store: batch %d and flushers %d must be at least 1", maxBatch, flushers)
	}
	ps := &PipelinedStore{RedisStore: s, pipe: p.Pipeline, queue: make(chan *spendCall, maxBatch*flushers), maxSize: maxBatch}
	for range flushers {
		go ps.flusher(ctx)
	}
	return ps, nil
}

// Spend implements Store.
func (p *PipelinedStore) Spend(ctx context.Context, key Key, cost int64, now time.Time) (Decision, error) {
	if err := checkCost(key, cost); err != nil {
		return Decision{}, err
	}
	keys := key.redis()
	call := callID(key, cost)
	cmd := p.spendCommand(keys, key, cost, now, call)
	var lease string
	if key.Concurrency > 0 {
		lease = call
	}
	c := spendCalls.Get().(*spendCall)
	c.ctx, c.keys, c.cmd, c.lease = ctx, keys, cmd, lease
	select {
	case p.queue <- c:
	case <-ctx.Done():
		c.ctx, c.keys, c.cmd = nil, nil, nil
		spendCalls.Put(c)
		return Decision{}, fmt.Errorf("spend %s: %w", key.Org, ctx.Err())
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		// The flusher still owns c: leave it to the garbage collector, not the pool. The
		// script may run: the caller compensates Call.
		return Decision{Call: call}, fmt.Errorf("spend %s: %w", key.Org, ctx.Err())
	}
	reply, err := c.reply, c.err
	c.ctx, c.keys, c.cmd, c.lease, c.reply, c.err = nil, nil, nil, "", nil, nil
	spendCalls.Put(c)
	if err != nil {
		return Decision{Call: call}, fmt.Errorf("spend %s: %w", key.Org, err)
	}
	return decodeSpend(reply, key, call)
}

func (p *PipelinedStore) flusher(ctx context.Context) {
	batch := make([]*spendCall, 0, p.maxSize)
	cmds := make([]*redis.IntSliceCmd, 0, p.maxSize)
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-p.queue:
			batch = append(batch[:0], c)
		}
	fill:
		for len(batch) < p.maxSize {
			select {
			case c := <-p.queue:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		p.flush(batch, cmds[:0])
	}
}

// flush sends batch as one pipeline and hands each call its reply. The pipeline's deadline
// is the latest of the callers': each caller also gives up at its own. A call whose caller
// gave up while it waited is not sent: nobody would answer its client, so it must not debit
// credits or hold a lease.
func (p *PipelinedStore) flush(batch []*spendCall, cmds []*redis.IntSliceCmd) {
	live := batch[:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			c.done <- struct{}{}
			continue
		}
		live = append(live, c)
	}
	batch = live
	if len(batch) == 0 {
		return
	}
	var deadline time.Time
	for _, c := range batch {
		d, ok := c.ctx.Deadline()
		if !ok {
			deadline = time.Time{}
			break
		}
		deadline = later(deadline, d)
	}
	ctx := context.Background()
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	pipe := p.pipe()
	for _, c := range batch {
		cmds = append(cmds, spendScript.queueInts(ctx, pipe, c.cmd))
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, c := range batch {
		c.reply, c.err = cmds[i].Result()
		if c.err != nil && redis.HasErrorPrefix(c.err, "NOSCRIPT") {
			// Not run: run it alone, where Run falls back to EVAL.
			c.reply, c.err = spendScript.runInts(ctx, p.client, c.keys.spend, c.cmd)
		}
		if c.lease != "" && (c.err != nil || c.ctx.Err() != nil) {
			// Nobody will release what it may have taken: the reply was lost, or its caller
			// gave up while it was on the wire (it gets the error, not a decision whose
			// lease is gone).
			if c.err == nil {
				c.err = c.ctx.Err()
			}
			p.releaseLost(c.keys, c.lease)
		}
		c.done <- struct{}{}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
