package limiter

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Scripts are sent at most once per call: a script whose reply was lost (a read timeout, a
// connection that broke after the write) may have run, and running it again would apply it
// twice. Forcing MaxRetries to -1 (NewRedisClient) is not enough: go-redis v9's
// ClusterClient.process retries within its MaxRedirects loop on any error shouldRetry
// accepts, which includes a read timeout when the command has no read timeout of its own
// (shouldRetry(err, cmd.readTimeout() == nil)) and io.EOF: first on the same node, then on
// another. Ring.process does the same within MaxRetries, and ClusterClient pipelines remap
// such a batch for another attempt. A read timeout of the command's own (which would turn the
// timeout case off) cannot be set from outside go-redis, and would leave io.EOF retried;
// MaxRedirects cannot tell redirects from retries (-1 turns both off). What every one of
// those loops checks is the command's NoRetry method, which go-redis documents as guarding
// against a second execution of a command that may have been written: scripts go out as
// noRetryCmd, whose NoRetry is true. MOVED and ASK replies are still followed (the cluster
// loop handles them before the NoRetry check: the script never ran), as is a pool whose
// connection broke before the write (go-redis replays that as a first send).
//
// Errors the server answers without running the script, such as TRYAGAIN while a slot
// migrates or CLUSTERDOWN, then reach the caller at once instead of after a retry; the
// gateway's fail mode decides those calls.

// noRetryCmd is a command go-redis sends at most once (see above).
type noRetryCmd struct{ *redis.Cmd }

// NoRetry implements redis.Cmder.
func (noRetryCmd) NoRetry() bool { return true }

// processor is what a client needs to send a command it did not build: go-redis's
// *Client, *ClusterClient, *Ring and pipelines have it.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// script is a Lua script run by SHA, falling back to its source on NOSCRIPT, as
// redis.Script.Run does, but with each command sent at most once.
type script struct {
	*redis.Script
	src string
}

func newScript(src string) script { return script{Script: redis.NewScript(src), src: src} }

// Run runs the script on c: EVALSHA, and EVAL when the server does not have it cached
// (NOSCRIPT: it did not run). A client that cannot send a command it did not build (a
// Scripter of another kind) gets redis.Script.Run.
func (s script) Run(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd {
	p, ok := c.(processor)
	if !ok {
		return s.Script.Run(ctx, c, keys, args...)
	}
	cmd := evalCmd(ctx, "evalsha", s.Hash(), keys, args)
	_ = p.Process(ctx, noRetryCmd{cmd})
	if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		cmd = evalCmd(ctx, "eval", s.src, keys, args)
		_ = p.Process(ctx, noRetryCmd{cmd})
	}
	return cmd
}

// queue adds an EVALSHA of the script to pipe, to be sent at most once; its NOSCRIPT error
// (not run) is the caller's to handle, with Run.
func (s script) queue(ctx context.Context, pipe redis.Pipeliner, keys []string, args ...any) *redis.Cmd {
	cmd := evalCmd(ctx, "evalsha", s.Hash(), keys, args)
	_ = pipe.Process(ctx, noRetryCmd{cmd})
	return cmd
}

// evalCmd builds the command EVAL or EVALSHA (name) of payload, as go-redis's Eval does.
func evalCmd(ctx context.Context, name, payload string, keys []string, args []any) *redis.Cmd {
	all := make([]any, 0, 3+len(keys)+len(args))
	all = append(all, name, payload, len(keys))
	for _, k := range keys {
		all = append(all, k)
	}
	all = append(all, args...)
	cmd := redis.NewCmd(ctx, all...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3)
	}
	return cmd
}
