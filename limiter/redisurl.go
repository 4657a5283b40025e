package limiter

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts applied when the URL does not set them. go-redis's defaults (5s dial, 3s read)
// would let a dead Redis hold a request for many seconds; a rate limiter must answer quickly
// and let the fail mode decide.
const (
	defaultDialTimeout  = time.Second
	defaultReadTimeout  = 500 * time.Millisecond
	defaultWriteTimeout = 500 * time.Millisecond
	defaultPoolTimeout  = time.Second
)

// noRetries is go-redis's MaxRetries value for "never retry". It is forced whatever the URL
// says: a script whose reply timed out may have run, and running it again would debit twice.
// It does not reach every retry (a cluster client retries within its redirect loop): the
// scripts themselves are sent as commands go-redis never sends twice (sendonce.go).
const noRetries = -1

// NewRedisClient returns a go-redis UniversalClient for rawURL:
//
//	redis://[user:pass@]host:port[/db][?opts]          one server (rediss:// for TLS, unix:// for a socket)
//	redis+cluster://host:port?addr=host2:port&addr=…   Redis Cluster (rediss+cluster:// for TLS)
//	redis+sentinel://host:26379?master_name=m&addr=…   Sentinel (rediss+sentinel:// for TLS)
//
// Options are go-redis's URL options (dial_timeout, read_timeout, pool_size, …); timeouts
// not given default to short values suited to a request path. Commands are never retried
// (max_retries is ignored), and a context deadline bounds every call.
func NewRedisClient(rawURL string) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("not a valid URL") // url errors quote the URL, which may hold a password
	}
	q := u.Query()
	base, mode, _ := strings.Cut(u.Scheme, "+")
	switch base {
	case "redis", "rediss", "unix":
	default:
		return nil, fmt.Errorf("unsupported scheme %q (want redis, rediss, unix, redis+cluster or redis+sentinel)", u.Scheme)
	}
	plain := *u
	plain.Scheme = base
	if u.Host == "" && base != "unix" {
		return nil, errors.New("missing host")
	}

	switch mode {
	case "":
		o, err := redis.ParseURL(plain.String())
		if err != nil {
			return nil, redactURLError(err, rawURL)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout =
			timeouts(q, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout)
		o.MaxRetries, o.ContextTimeoutEnabled = noRetries, true
		o.DialerRetries = dialAttempts(q, o.DialerRetries)
		return redis.NewClient(o), nil
	case "cluster":
		o, err := redis.ParseClusterURL(plain.String())
		if err != nil {
			return nil, redactURLError(err, rawURL)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout =
			timeouts(q, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout)
		o.MaxRetries, o.ContextTimeoutEnabled = noRetries, true
		o.DialerRetries = dialAttempts(q, o.DialerRetries)
		return redis.NewClusterClient(o), nil
	case "sentinel":
		o, err := redis.ParseFailoverURL(plain.String())
		if err != nil {
			return nil, redactURLError(err, rawURL)
		}
		if o.MasterName == "" {
			return nil, errors.New("redis+sentinel needs ?master_name=")
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout =
			timeouts(q, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout)
		o.MaxRetries, o.ContextTimeoutEnabled = noRetries, true
		o.DialerRetries = dialAttempts(q, o.DialerRetries)
		return redis.NewFailoverClient(o), nil
	default:
		return nil, fmt.Errorf("unsupported scheme %q (want redis, rediss, unix, redis+cluster or redis+sentinel)", u.Scheme)
	}
}

// dialAttempts is one dial per connection unless the URL says otherwise (dialer_retries):
// go-redis's default of 5 dials 100ms apart makes each call on a dead Redis wait 400ms
// even when the dial is refused at once; the gateway's breaker does the retrying instead.
func dialAttempts(q url.Values, given int) int {
	if q.Has("dialer_retries") && given > 0 {
		return given
	}
	return 1
}

// timeouts returns the given values, replacing those the URL did not set with our defaults.
func timeouts(q url.Values, dial, read, write, pool time.Duration) (time.Duration, time.Duration, time.Duration, time.Duration) {
	if !q.Has("dial_timeout") {
		dial = defaultDialTimeout
	}
	if !q.Has("read_timeout") {
		read = defaultReadTimeout
	}
	if !q.Has("write_timeout") {
		write = defaultWriteTimeout
	}
	if !q.Has("pool_timeout") {
		pool = defaultPoolTimeout
	}
	return dial, read, write, pool
}

// redactURLError keeps a password in the URL out of an error that will be logged.
func redactURLError(err error, rawURL string) error {
	msg := err.Error()
	if u, perr := url.Parse(rawURL); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return errors.New(msg)
}
