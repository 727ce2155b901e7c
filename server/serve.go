package server

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"seatmap/booking"
	"seatmap/realtime"
	"seatmap/web"
)

// keyspaceEvents are the Redis keyspace notification classes seatmap needs:
// K keyspace channel, E keyevent, x expired, $ string commands (SET), g
// generic commands (DEL, EXPIRE).
const keyspaceEvents = "KEx$g"

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address (ADDR)")
	noMigrate := fs.Bool("no-migrate", false, "do not apply migrations at start")
	noWorkers := fs.Bool("no-workers", false, "do not run the admitter, outbox relay, recovery and reconciler here")
	fs.BoolVar(&cfg.Pprof, "pprof", cfg.Pprof, "serve /debug/pprof/ to staff (PPROF=1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Migrate, cfg.Workers = !*noMigrate, !*noWorkers
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	srv, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ADDR: listen on %s: %w", cfg.Addr, err)
	}
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "seatmap serving on %s\n", url)
	if cfg.StaffTokenRandom {
		fmt.Fprintf(stdout, "staff token (random for this process; set STAFF_TOKEN to fix it): %s\n", cfg.StaffToken)
	} else {
		fmt.Fprintln(stdout, "staff token: from STAFF_TOKEN")
	}
	if cfg.SessionSecretRandom {
		log.Warn("SESSION_SECRET is not set: using a random key, so sessions end when this process does and several processes cannot share fans")
	}
	return srv.Serve(ctx, ln)
}

// Server is one seatmap process: its connections, HTTP handler and workers.
type Server struct {
	cfg     Config
	log     *slog.Logger
	db      *pgxpool.Pool
	rdb     *redis.Client
	payDB   *pgxpool.Pool
	booking *booking.Service
	queue   *realtime.WaitingRoom
	hub     *realtime.Hub
	sockets sync.WaitGroup
	// inFlight counts the requests being served, sockets aside.
	inFlight inFlight
	// keyspaceWarn logs a refused CONFIG SET once, not per connection.
	keyspaceWarn sync.Once
	handler      http.Handler
	reg          *prometheus.Registry
	workers      []worker
	// closeSockets closes every WebSocket with 1001 at shutdown.
	closeSockets func()
}

// worker is a background loop supervised by Serve: restarted after a panic or
// an error, stopped by context cancellation.
type worker struct {
	name string
	run  func(ctx context.Context) error
}

// New connects to Postgres and Redis (each within 5 s, or an error naming
// its variable), migrates unless disabled, enables keyspace notifications and
// builds the handler and workers. The caller must Close it.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if cfg.Migrate {
		if _, err := booking.Migrate(cctx, cfg.DatabaseURL); err != nil {
			return nil, fmt.Errorf("DATABASE_URL: %w", err)
		}
	}
	db, err := booking.OpenDB(cctx, cfg.DatabaseURL, booking.DefaultPoolSize)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	s.db = db
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opt.PoolSize = 64
	opt.DialTimeout = 2 * time.Second
	opt.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		s.enableKeyspaceEvents(ctx, cn)
		return nil
	}
	s.rdb = redis.NewClient(opt)
	if err := s.rdb.Ping(cctx).Err(); err != nil {
		s.Close()
		return nil, fmt.Errorf("REDIS_URL: cannot reach Redis: %w", err)
	}
	s.enableKeyspaceEvents(cctx, s.rdb)

	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := newMetrics(s.reg)
	// The sandbox payment provider stands in for a remote one: it gets its
	// own small pool so a slow "provider" never starves the sale's queries.
	payDB, err := booking.OpenDB(cctx, cfg.DatabaseURL, booking.DefaultPoolSize)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	s.payDB = payDB
	s.booking = booking.NewService(db, s.rdb, booking.NewSandbox(payDB), booking.Config{
		HoldTTL:        cfg.HoldTTL,
		PaymentWindow:  cfg.PaymentWindow,
		MaxSeatsPerFan: cfg.MaxSeatsPerFan,
		HoldCooldown:   cfg.HoldCooldown,
	}, log, nil)
	s.booking.SetHooks(m.bookingHooks())
	s.queue = realtime.NewWaitingRoom(s.rdb, s.booking, realtime.WaitingRoomConfig{
		AdmitRate: cfg.AdmitRate,
		AdmitTTL:  cfg.AdmitTTL,
	}, log, nil)
	s.queue.Hooks = m.waitingRoomHooks()
	// Every process pushes positions to its own fans; with --no-workers it
	// still does, since the waiting room's Run also serves local sockets.
	s.workers = append(s.workers, worker{"waiting room", s.queue.Run})
	if cfg.Workers {
		s.workers = append(s.workers,
			worker{"outbox relay", func(ctx context.Context) error { s.booking.RunRelay(ctx, cfg.DatabaseURL); return ctx.Err() }},
			worker{"checkout recovery", func(ctx context.Context) error { s.booking.RunRecovery(ctx, 5*time.Second); return ctx.Err() }},
			worker{"reconciler", func(ctx context.Context) error { s.booking.RunReconciler(ctx, 30*time.Second); return ctx.Err() }},
		)
	}
	s.hub = realtime.NewHub(s.rdb, s.booking, realtime.Options{
		PushInterval: cfg.PushInterval,
		PushBudget:   cmp.Or(cfg.PushBudget, -1), // 0 in the config: unlimited
		Busy:         s.inFlight.count,
		HoldTTL:      cfg.HoldTTL,
		Hooks:        m.hubHooks(),
		Logger:       log,
	})
	shutdown, closeSockets := context.WithCancel(context.Background())
	s.closeSockets = closeSockets
	m.watchInFlight(s.inFlight.count)
	m.watchDBPools(map[string]*pgxpool.Pool{"app": s.db, "payments": s.payDB})
	s.handler = s.inFlight.wrap(web.NewHandler(web.Deps{
		Booking:            s.booking,
		Queue:              s.queue,
		Hub:                s.hub,
		Shutdown:           shutdown,
		Sockets:            &s.sockets,
		MaxConnsPerAddress: cfg.MaxConnsPerAddress,
		Audit:              s.booking.Audit,
		Limits:             cfg.Limits,
		Ready:              s.ready,
		Metrics:            promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}),
		Log:                log,
		SessionSecret:      cfg.SessionSecret,
		StaffToken:         cfg.StaffToken,
		AllowedOrigins:     cfg.AllowedOrigins,
		Pprof:              cfg.Pprof,
	}))
	return s, nil
}

// inFlight counts the HTTP requests being served. A WebSocket is one
// request for its whole life, so sockets are left out: what is counted is
// the work (holds, checkouts, joins, pages) the fan-out budget gives way to.
type inFlight struct{ n atomic.Int64 }

func (f *inFlight) count() int { return int(f.n.Load()) }

func (f *inFlight) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			h.ServeHTTP(w, r)
			return
		}
		f.n.Add(1)
		defer f.n.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// configCmds is what enableKeyspaceEvents needs of a Redis client or a
// single connection.
type configCmds interface {
	ConfigGet(ctx context.Context, parameter string) *redis.MapStringStringCmd
	ConfigSet(ctx context.Context, parameter, value string) *redis.StatusCmd
}

// enableKeyspaceEvents adds the notification classes seatmap needs to what
// Redis already has. It runs at start and on every new Redis connection
// (OnConnect), so a Redis restarted with its default configuration gets them
// back before the live map's listener resubscribes. Where CONFIG is not
// allowed (managed Redis), it logs once how to enable them by hand.
func (s *Server) enableKeyspaceEvents(ctx context.Context, c configCmds) {
	cur, err := c.ConfigGet(ctx, "notify-keyspace-events").Result()
	have := ""
	if err == nil {
		have = cur["notify-keyspace-events"]
	}
	want := have
	for _, ch := range keyspaceEvents {
		if !strings.ContainsRune(want, ch) && !(strings.ContainsRune(want, 'A') && strings.ContainsRune("x$g", ch)) {
			want += string(ch)
		}
	}
	if err == nil && want == have {
		return
	}
	if err := c.ConfigSet(ctx, "notify-keyspace-events", want).Err(); err != nil {
		s.keyspaceWarn.Do(func() {
			s.log.Error("cannot enable Redis keyspace notifications: live seat maps will not update. "+
				"Enable them in redis.conf or your provider's console: notify-keyspace-events "+keyspaceEvents, "err", err)
		})
		return
	}
	s.log.Info("enabled Redis keyspace notifications", "notify-keyspace-events", want)
}

// ready reports whether Postgres and Redis both answer.
func (s *Server) ready(ctx context.Context) error {
	if err := s.db.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Handler returns the HTTP handler (for tests through httptest).
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves HTTP on ln and runs the workers until ctx is cancelled, then
// shuts down gracefully: stop accepting, close WebSockets with 1001, let
// in-flight requests (checkouts) finish, all within ShutdownTimeout.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		// WriteTimeout covers the slowest JSON response: a checkout that waits
		// for a slow card (3 s sandbox, PAYMENT_WINDOW at most). WebSocket
		// handlers clear it for their hijacked connections.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	for _, w := range s.workers {
		go s.supervise(wctx, w, done)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	select {
	case err := <-errc:
		stopWorkers()
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if s.closeSockets != nil {
		s.closeSockets()
	}
	err := hs.Shutdown(sctx)
	socketsClosed := make(chan struct{})
	go func() { s.sockets.Wait(); close(socketsClosed) }()
	select {
	case <-socketsClosed:
	case <-sctx.Done():
	}
	stopWorkers()
	for range s.workers {
		select {
		case <-done:
		case <-sctx.Done():
		}
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	s.log.Info("stopped")
	return nil
}

// supervise runs w until ctx ends, restarting it a second after it fails.
func (s *Server) supervise(ctx context.Context, w worker, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	for ctx.Err() == nil {
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			return w.run(ctx)
		}()
		if ctx.Err() != nil {
			return
		}
		s.log.Error("worker stopped; restarting", "worker", w.name, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Close releases Redis and Postgres, in reverse order of opening.
func (s *Server) Close() {
	if s.hub != nil {
		s.hub.Close()
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
	if s.payDB != nil {
		s.payDB.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
}
