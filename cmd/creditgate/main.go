// Command creditgate is a reverse proxy that charges every API call in credits against the
// calling org's rolling window and answers 429 when the credits run out.
//
// With no configuration it starts a demo: in-memory store, a built-in sample upstream, demo
// orgs and keys, and prints curl lines to try. With configuration (see the README) it is the
// production gateway.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/creditgate/creditgate/costtable"
	"github.com/creditgate/creditgate/gateway"
	"github.com/creditgate/creditgate/limiter"
	"github.com/creditgate/creditgate/orgs"
	"github.com/creditgate/creditgate/plans"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal during the drain ends the process at once
	}()
	err := run(ctx, environ(), os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "creditgate: %v\n", err)
		os.Exit(1)
	}
}

func environ() map[string]string {
	m := make(map[string]string)
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// configError lists every configuration problem on its own line.
type configError struct{ err error }

func (e configError) Error() string {
	return "invalid configuration:\n  " + strings.ReplaceAll(e.err.Error(), "\n", "\n  ")
}
func (e configError) Unwrap() error { return e.err }

// run starts the gateway and serves until ctx is done, then shuts down gracefully: stop
// accepting, let calls in flight finish (up to CREDITGATE_SHUTDOWN_TIMEOUT), close the store.
func run(ctx context.Context, environ map[string]string, stdout io.Writer) error {
	cfg, err := loadConfig(environ)
	if err != nil {
		return configError{err}
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	storeOpts := limiter.Options{Window: cfg.Window, Bucket: cfg.Bucket, LeaseTTL: cfg.LeaseTTL, CallTTL: cfg.CallRecordTTL}
	redisLog := &redisLogger{s: log.Named("redis").Sugar()}
	var (
		store gateway.Store
		ready func(context.Context) error
	)
	if cfg.RedisURL != "" {
		redis.SetLogger(redisLog)
		client, err := limiter.NewRedisClient(cfg.RedisURL)
		if err != nil {
			return configError{fmt.Errorf("CREDITGATE_REDIS_URL: %w", err)}
		}
		defer client.Close()
		rs, err := limiter.NewRedisStore(client, storeOpts)
		if err != nil {
			return err
		}
		startCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = rs.LoadScripts(startCtx)
		cancel()
		if err != nil {
			return fmt.Errorf("CREDITGATE_REDIS_URL: Redis is not reachable at start: %w", err)
		}
		store, ready = rs, rs.LoadScripts
		if cfg.RedisPipeline {
			// The flushers outlive ctx: calls still draining after a signal need them.
			if store, err = limiter.NewPipelinedStore(context.WithoutCancel(ctx), rs, 128, 2); err != nil {
				return configError{fmt.Errorf("CREDITGATE_REDIS_PIPELINE: %w", err)}
			}
		}
	} else {
		ms, err := limiter.NewMemoryStore(storeOpts)
		if err != nil {
			return err
		}
		store = ms
	}

	upstream, adminTokens := cfg.upstream, cfg.adminTokens
	demoToken := "" // the demo's admin token, when the demo made one
	if cfg.demo {
		demoURL, closeDemo, err := startDemoUpstream()
		if err != nil {
			return err
		}
		defer closeDemo()
		upstream = demoURL
		list := demoOrgs()
		dir, err := orgs.NewDirectory(list)
		if err != nil {
			return err
		}
		cfg.orgSet = &orgSet{Plans: plans.New(plans.BuiltinEditions(), cfg.billing()), dir: dir}
		if adminTokens.Len() == 0 {
			demoToken = demoAdminToken
			adminTokens = demoAdminTokens()
			cfg.adminTokens = adminTokens // for the start-up log
		}
	}
	// The plans in force. The gateway asks for an org's limits when it prepares the org: on
	// its first call, or when handed the orgs (gw.SetOrgs) for those in use. A reload stores
	// the new plans first and then hands over their orgs, so no org of the new set is prepared
	// with the old plans (a call that began before the reload and prepares its org meanwhile
	// may get the new plans' figures).
	var current atomic.Pointer[orgSet]
	current.Store(cfg.orgSet)

	if cfg.jwt != nil {
		// A token's users claim counts where the org's edition grows per user.
		cfg.jwt.PerUser = func(o *orgs.Org) bool {
			e, ok := current.Load().Editions().Lookup(o.Edition)
			return ok && e.Kind == plans.KindCRM && !o.HasLimit
		}
	}
	metrics := gateway.NewMetrics(gateway.MetricsOptions{MaxOrgs: cfg.MetricsMaxOrgs})
	gw, err := gateway.New(gateway.Config{
		Upstream:           upstream,
		Routes:             cfg.routes,
		UpstreamTimeout:    cfg.UpstreamTimeout,
		UpstreamTLS:        cfg.upstreamTLS,
		UpstreamHTTP1Only:  !cfg.UpstreamHTTP2,
		Store:              store,
		StoreInProcess:     cfg.RedisURL == "", // the memory store
		StoreTimeout:       cfg.RedisTimeout,
		FailOpen:           cfg.FailMode == "open",
		FailLocal:          cfg.FailMode == "local",
		Costs:              cfg.costTable,
		Orgs:               cfg.orgSet.dir,
		LimitOf:            func(o *orgs.Org) int64 { return current.Load().LimitOf(o) },
		ConcurrencyOf:      func(o *orgs.Org) int64 { return current.Load().ConcurrencyOf(o) },
		AddonPlanOf:        func(o *orgs.Org) plans.Addon { return current.Load().AddonOf(o) },
		Slabs:              cfg.slabs,
		HeavyConcurrency:   cfg.HeavyConcurrency,
		Mode:               gateway.OrgMode(cfg.OrgMode),
		OrgHeader:          cfg.OrgHeader,
		JWT:                cfg.jwt,
		StripCredentials:   cfg.StripCredentials,
		PreserveHost:       cfg.PreserveHost,
		CORS:               cfg.cors,
		Shadow:             cfg.Shadow,
		MaxBodyBytes:       cfg.MaxBodyBytes,
		BodyTimeout:        cfg.BodyTimeout,
		LeaseTTL:           cfg.LeaseTTL,
		CallTTL:            cfg.CallRecordTTL,
		BodyBufferBytes:    cfg.BodyBufferBytes,
		BodyBufferOrgBytes: cfg.BodyBufferOrgBytes,
		MaxInflateRatio:    cfg.MaxInflateRatio,
		MethodOverride:     gateway.MethodOverride(cfg.MethodOverride),
		RateLimitFields:    gateway.RateLimitFields(cfg.RateLimitFields),
		Window:             cfg.Window,
		Logger:             log,
		Metrics:            metrics,
		BreakerFailures:    cfg.BreakerFailures,
		BreakerCooldown:    cfg.BreakerCooldown,
		Probe:              ready,
		Notices:            &cfg.notices,
	})
	if err != nil {
		return err
	}
	defer gw.Close()
	quiet := gw.BreakerOpen
	redisLog.quiet.Store(&quiet)
	// Reading a large orgs file leaves its text and the parsed copy behind (with a million
	// orgs, twice what the orgs then hold): collected and given back to the system before
	// serving rather than held at the process's peak.
	debug.FreeOSMemory()

	proxyLn, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("CREDITGATE_LISTEN_ADDR: %w", err)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		proxyLn.Close()
		return fmt.Errorf("CREDITGATE_ADMIN_ADDR: %w", err)
	}
	errLog := zap.NewStdLog(log.Named("http").WithOptions(zap.IncreaseLevel(zap.WarnLevel)))
	proxySrv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          errLog,
	}
	adminSrv := &http.Server{
		Handler:           gateway.NewAdminHandler(gateway.AdminConfig{Ready: ready, Gateway: gw, Tokens: adminTokens, Metrics: metrics}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errLog,
	}

	log.Info("creditgate listening", append([]zap.Field{
		zap.String("proxy_addr", proxyLn.Addr().String()), zap.String("admin_addr", adminLn.Addr().String()),
	}, cfg.logFields()...)...)
	if cfg.demo {
		printDemo(stdout, proxyLn.Addr().String(), adminLn.Addr().String(), demoToken)
	}

	if adminTokens.Len() == 0 {
		log.Warn("admin API disabled: CREDITGATE_ADMIN_TOKENS is not set")
	}

	serveErr := make(chan error, 2)
	if cfg.cert != nil {
		proxySrv.TLSConfig = cfg.cert.config()
		go func() { serveErr <- proxySrv.ServeTLS(proxyLn, "", "") }()
	} else {
		go func() { serveErr <- proxySrv.Serve(proxyLn) }()
	}
	go func() { serveErr <- adminSrv.Serve(adminLn) }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
serve:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down", zap.Duration("timeout", cfg.ShutdownTimeout))
			break serve
		case <-hup:
			if cfg.cert != nil {
				if err := cfg.cert.load(); err != nil {
					log.Error("SIGHUP: TLS certificate refused, the running one stays", zap.Error(err))
				} else {
					log.Info("SIGHUP: TLS certificate reloaded")
				}
			}
			reload(cfg, gw, &current, log)
		case err := <-serveErr:
			log.Error("server stopped", zap.Error(err))
			_ = adminSrv.Close()
			_ = proxySrv.Close()
			return err
		}
	}
	gw.Drain() // /readyz answers 503 from now on
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// The proxy first: no new calls, the calls in flight finish. Admin last, so /healthz
	// answers while the proxy drains.
	err = proxySrv.Shutdown(shutCtx)
	if aerr := adminSrv.Shutdown(shutCtx); err == nil {
		err = aerr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown timeout: calls still in flight were cut", zap.Duration("timeout", cfg.ShutdownTimeout))
		return nil
	}
	log.Info("stopped")
	return err
}

// reload reads the files of the configuration again on SIGHUP: the routes (with their cost
// tables), the cost table, the editions and the orgs. Each part that is valid takes effect for new requests at once (requests in
// flight finish with what they started with); a part with an error is refused with a log line
// and its running version stays.
func reload(cfg Config, gw *gateway.Gateway, current *atomic.Pointer[orgSet], log *zap.Logger) {
	if cfg.jwt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := gw.ReloadKeys(ctx); err != nil {
			log.Error("SIGHUP: JWK set refused, the running keys stay", zap.Error(err))
		} else {
			log.Info("SIGHUP: JWK set reloaded")
		}
		cancel()
	}
	if cfg.CostTableFile == "" && cfg.RoutesFile == "" && cfg.OrgsFile == "" && cfg.EditionsFile == "" {
		if cfg.cert == nil && cfg.jwt == nil {
			log.Info("SIGHUP: nothing to reload (no CREDITGATE_ROUTES_FILE, CREDITGATE_COST_TABLE_FILE, CREDITGATE_ORGS_FILE, CREDITGATE_EDITIONS_FILE, TLS certificate or JWK set)")
		}
		return
	}
	if cfg.RoutesFile != "" {
		if routes, err := cfg.loadRoutes(); err != nil {
			log.Error("SIGHUP: routes refused, the running ones stay", zap.Error(err))
		} else if err := gw.SetRoutes(routes); err != nil {
			log.Error("SIGHUP: routes refused, the running ones stay", zap.Error(err))
		} else {
			log.Info("SIGHUP: routes reloaded", zap.Int("routes", len(routes)))
		}
	}
	if cfg.CostTableFile != "" {
		if tbl, err := costtable.LoadFile(cfg.CostTableFile); err != nil {
			log.Error("SIGHUP: cost table refused, the running table stays", zap.Error(err))
		} else {
			gw.SetCosts(tbl)
			log.Info("SIGHUP: cost table reloaded", zap.String("cost_table", tbl.Name()), zap.Int("rules", len(tbl.Rules())))
		}
	}
	if cfg.OrgsFile != "" || cfg.EditionsFile != "" {
		start := time.Now()
		p, err := cfg.loadOrgSet()
		if err != nil {
			log.Error("SIGHUP: orgs or editions refused, the running ones stay", zap.Error(err))
			return
		}
		current.Store(p)
		gw.SetOrgs(p.dir)
		log.Info("SIGHUP: orgs and editions reloaded", zap.Int("orgs", p.dir.Len()), zap.Duration("took", time.Since(start)))
	}
}

// redisLogger sends go-redis's own messages (pool dial failures, …) to zap as warnings, so
// they are structured like every other line. While quiet reports true (the breaker is open:
// it has logged the cause once and probes on its own), they are dropped, or every failed
// probe would log a line.
type redisLogger struct {
	s     *zap.SugaredLogger
	quiet atomic.Pointer[func() bool]
}

func (l *redisLogger) Printf(_ context.Context, format string, v ...any) {
	if q := l.quiet.Load(); q != nil && (*q)() {
		return
	}
	l.s.Warnf(format, v...)
}

func newLogger(cfg Config) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(cfg.logLevel)
	zc.DisableStacktrace = true // errors here are operational, and each names its cause
	zc.EncoderConfig.TimeKey = "ts"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.EncoderConfig.EncodeDuration = zapcore.StringDurationEncoder
	if cfg.demo {
		zc.Encoding = "console"
		zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	}
	return zc.Build()
}
