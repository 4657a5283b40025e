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

// noRetryInts is a script's command, read as an array of integers, that go-redis sends at
// most once.
type noRetryInts struct{ *redis.IntSliceCmd }

// NoRetry implements redis.Cmder.
func (noRetryInts) NoRetry() bool { return true }

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
	sha any // the SHA, boxed once: every EVALSHA names it
}

func newScript(src string) script {
	s := redis.NewScript(src)
	return script{Script: s, src: src, sha: s.Hash()}
}

// Run runs the script on c: EVALSHA, and EVAL when the server does not have it cached
// (NOSCRIPT: it did not run). A client that cannot send a command it did not build (a
// Scripter of another kind) gets redis.Script.Run.
func (s script) Run(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd {
	if _, ok := c.(processor); !ok {
		return s.Script.Run(ctx, c, keys, args...)
	}
	return s.run(ctx, c, keys, append(s.command(keys, len(args)), args...))
}

// command returns the start of the script's EVALSHA over keys as go-redis sends it (the
// command, the SHA, the key count, the keys), with room for argc arguments: the caller
// appends its ARGV and hands the whole to run, so a call's command is one allocation. The
// keys go in as *string, which go-redis writes, and hashes to a cluster slot, as the string
// itself: a pointer is boxed without allocating, a string is not. keys must not change
// while the command is in use (the scripts' key lists never do).
func (s script) command(keys []string, argc int) []any {
	cmd := make([]any, 3+len(keys), 3+len(keys)+argc)
	cmd[0], cmd[1], cmd[2] = "evalsha", s.sha, len(keys)
	for i := range keys {
		cmd[3+i] = &keys[i]
	}
	return cmd
}

// run sends cmd, built by command, on c as Run does: once, and as EVAL of the source when
// the server answers NOSCRIPT. keys are cmd's, for a Scripter that cannot send it.
func (s script) run(ctx context.Context, c redis.Scripter, keys []string, cmd []any) *redis.Cmd {
	p, ok := c.(processor)
	if !ok {
		return s.Script.Run(ctx, c, keys, cmd[3+len(keys):]...)
	}
	ec := evalCmd(ctx, cmd)
	_ = p.Process(ctx, noRetryCmd{ec})
	if err := ec.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		ec = evalCmd(ctx, s.eval(cmd))
		_ = p.Process(ctx, noRetryCmd{ec})
	}
	return ec
}

// runInts is run for a script that replies an array of integers, read straight into
// []int64 (without the []any of boxed values a redis.Cmd reads first).
func (s script) runInts(ctx context.Context, c redis.Scripter, keys []string, cmd []any) ([]int64, error) {
	p, ok := c.(processor)
	if !ok {
		return s.Script.Run(ctx, c, keys, cmd[3+len(keys):]...).Int64Slice()
	}
	ic := intsCmd(ctx, cmd)
	_ = p.Process(ctx, noRetryInts{ic})
	if err := ic.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		ic = intsCmd(ctx, s.eval(cmd))
		_ = p.Process(ctx, noRetryInts{ic})
	}
	return ic.Result()
}

// eval returns cmd, an EVALSHA built by command, as EVAL of the script's source.
func (s script) eval(cmd []any) []any {
	return append([]any{"eval", s.src}, cmd[2:]...)
}

// queueInts adds cmd, built by command, to pipe, to be sent at most once and its reply read
// as runInts reads it; its NOSCRIPT error (not run) is the caller's to handle, with runInts.
func (s script) queueInts(ctx context.Context, pipe redis.Pipeliner, cmd []any) *redis.IntSliceCmd {
	ic := intsCmd(ctx, cmd)
	_ = pipe.Process(ctx, noRetryInts{ic})
	return ic
}

// evalCmd is the go-redis command of cmd, an EVAL or EVALSHA built by command.
func evalCmd(ctx context.Context, cmd []any) *redis.Cmd {
	ec := redis.NewCmd(ctx, cmd...)
	if cmd[2] != 0 {
		ec.SetFirstKeyPos(3)
	}
	return ec
}

// intsCmd is evalCmd for a reply read as an array of integers.
func intsCmd(ctx context.Context, cmd []any) *redis.IntSliceCmd {
	ic := redis.NewIntSliceCmd(ctx, cmd...)
	if cmd[2] != 0 {
		ic.SetFirstKeyPos(3)
	}
	return ic
}
