package booking

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Config holds the domain's tunables. Zero fields take the defaults of
// DefaultConfig.
type Config struct {
	// HoldTTL is how long a seat hold lasts (API: HOLD_TTL, default 5m): long
	// enough to type a card number, short enough that abandoned seats return
	// to the pool during a drop.
	HoldTTL time.Duration
	// PaymentWindow is how long holds are extended when checkout starts
	// (API: PAYMENT_WINDOW, default 2m): the worst payment latency we wait for.
	PaymentWindow time.Duration
	// MinHoldLeft is the least time a hold must have left for checkout to
	// start charging (default 2s): below it the hold could expire between the
	// check and the extension.
	MinHoldLeft time.Duration
	// MaxSeatsPerFan caps seats held plus bought per fan and event
	// (API: MAX_SEATS_PER_FAN, default 6).
	MaxSeatsPerFan int
	// RecoverAfter is how long a checkout may sit unfinished before the
	// recovery worker takes it over (default PaymentWindow + 30s, so a live
	// request is always done or dead by then).
	RecoverAfter time.Duration
	// HoldCooldown is the denial-of-inventory cool-down (default 1m): when a
	// fan's hold on a seat expires unpaid, that fan may not hold the same
	// seat again for this long (other fans may). Long enough that a bot
	// cannot keep a seat off the market by re-holding it the moment its hold
	// lapses; short enough that a fan who was merely slow can come back.
	// Releasing a hold explicitly, or buying the seat, starts no cool-down.
	HoldCooldown time.Duration
}

// DefaultConfig returns the defaults documented in API.md.
func DefaultConfig() Config {
	return Config{
		HoldTTL:        5 * time.Minute,
		PaymentWindow:  2 * time.Minute,
		MinHoldLeft:    2 * time.Second,
		MaxSeatsPerFan: 6,
		HoldCooldown:   time.Minute,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HoldTTL <= 0 {
		c.HoldTTL = d.HoldTTL
	}
	if c.PaymentWindow <= 0 {
		c.PaymentWindow = d.PaymentWindow
	}
	if c.MinHoldLeft <= 0 {
		c.MinHoldLeft = d.MinHoldLeft
	}
	if c.MaxSeatsPerFan <= 0 {
		c.MaxSeatsPerFan = d.MaxSeatsPerFan
	}
	if c.HoldCooldown <= 0 {
		c.HoldCooldown = d.HoldCooldown
	}
	if c.RecoverAfter <= 0 {
		c.RecoverAfter = c.PaymentWindow + 30*time.Second
	}
	return c
}

// Service is the booking domain over Postgres (source of truth) and Redis
// (holds, fairness, fan-out). It is safe for concurrent use.
type Service struct {
	db  *pgxpool.Pool
	rdb redis.UniversalClient
	// scripts runs the Lua scripts of holds, releases and checkouts:
	// rdb's autopipeliner (scripterFor).
	scripts  redis.Scripter
	payments Payments
	cfg      Config
	log      *slog.Logger
	now      func() time.Time

	catalogs     sync.Map           // event id → *catalog
	catalogLoads singleflight.Group // one catalog load per event at a time
	catalogReads atomic.Int64       // catalogs read from SQL (tests)
	hooks        atomic.Pointer[Hooks]

	// crashAt, when set (tests only, see export_test.go), is consulted at
	// named steps of the checkout and the relay; a non-nil error stops the
	// flow right there, as if the process had died.
	crashAt func(step string) error
	// onlyEvent, when set (tests only), restricts RecoverCheckouts and
	// RelayOutbox to one event so parallel tests do not finish each other's work.
	onlyEvent string

	// The outbox relay of this process (RunRelay) is woken through relayWake
	// after each sale this process commits; relays counts the running ones.
	relayWake chan struct{}
	relays    atomic.Int32
	relayPoll time.Duration // relayPoll, or a test's
}

// Hooks are callbacks for metrics, so booking need not import a metrics
// library. Nil funcs are skipped. They are called synchronously on the hot
// path and must be fast and safe for concurrent use.
type Hooks struct {
	// CheckoutDone is called once per Checkout call with its outcome ("ok"
	// or the error code) and how long it took.
	CheckoutDone func(outcome string, d time.Duration)
	// CommitLatency is the duration of the sale's SQL transaction.
	CommitLatency func(d time.Duration)
	// HoldDone is called once per Hold call with "ok" or the error code.
	HoldDone func(outcome string)
	// RelayLag is, per relayed outbox row, the time from its insert to its
	// publication in Redis.
	RelayLag func(d time.Duration)
	// Reconciled reports repairs: kind is "sold_added", "sold_removed",
	// "fanbought_added", "fanbought_removed" or "holds_deleted"; called
	// only with n > 0.
	Reconciled func(kind string, n int)
}

// SetHooks installs metric callbacks; safe to call at any time.
func (s *Service) SetHooks(h Hooks) { s.hooks.Store(&h) }

func (s *Service) hook() *Hooks {
	if h := s.hooks.Load(); h != nil {
		return h
	}
	return &Hooks{}
}

// step is a named point of a multi-step flow at which tests may simulate a
// crash.
func (s *Service) step(name string) error {
	if s.crashAt == nil {
		return nil
	}
	return s.crashAt(name)
}

// NewService returns a Service. payments may be nil when the caller never
// checks out (tools such as `seatmap seed`); now may be nil for time.Now.
func NewService(db *pgxpool.Pool, rdb redis.UniversalClient, payments Payments, cfg Config, log *slog.Logger, now func() time.Time) *Service {
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, rdb: rdb, scripts: scripterFor(rdb), payments: payments, cfg: cfg.withDefaults(), log: log, now: now,
		relayWake: make(chan struct{}, 1), relayPoll: relayPoll}
}

// scripterFor returns rdb's autopipeliner when it has one (a *redis.Client
// or *redis.ClusterClient), else rdb. The autopipeliner belongs to the
// client: closing the client stops it.
//
// What changes for a script run through it: it is queued with the scripts
// of other goroutines and the batch runs on the autopipeliner's own
// connection, so the caller's context no longer cancels it once queued (the
// client's read and write timeouts still bound it). A batch cut off by a
// dropped connection is retried whole, just as the plain client retries a
// single command, so nothing about retries changes. go-redis marks the
// autopipeliner experimental: go.mod pins the version it was measured with.
func scripterFor(rdb redis.UniversalClient) redis.Scripter {
	if c, ok := rdb.(interface {
		AutoPipeline() (*redis.AutoPipeliner, error)
	}); ok {
		if ap, err := c.AutoPipeline(); err == nil {
			return ap
		}
	}
	return rdb
}

// Config returns the effective configuration (defaults applied).
func (s *Service) Config() Config { return s.cfg }
