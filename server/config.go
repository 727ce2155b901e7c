// Package server wires seatmap together: configuration, the HTTP server,
// background workers and their supervision, metrics, and the lifecycle from
// start to graceful shutdown. main only calls Run.
package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"seatmap/web"
)

// Config is every setting of `seatmap serve`, read once from the environment
// (API.md "Process") and passed down. Each field documents its default and why.
type Config struct {
	// Addr is the listen address (ADDR, default 127.0.0.1:8080: loopback
	// until someone decides to expose it).
	Addr string
	// DatabaseURL is the Postgres connection string (DATABASE_URL, required).
	DatabaseURL string
	// RedisURL is the Redis URL (REDIS_URL, required).
	RedisURL string
	// SessionSecret is the HMAC key of fan cookies and admissions
	// (SESSION_SECRET; random per process with a warning, which logs every fan
	// out on restart and breaks multi-process deployments).
	SessionSecret []byte
	// SessionSecretRandom records that SessionSecret was generated.
	SessionSecretRandom bool
	// StaffToken is the staff bearer token and login password (STAFF_TOKEN;
	// random per process, printed once at start).
	StaffToken string
	// StaffTokenRandom records that StaffToken was generated.
	StaffTokenRandom bool
	// HoldTTL is a seat hold's lifetime (HOLD_TTL, default 5m).
	HoldTTL time.Duration
	// AdmitRate is fans admitted per second per event (ADMIT_RATE, default
	// 500: what one Postgres sustains in checkouts with headroom; 0 pauses).
	AdmitRate int
	// AdmitTTL is how long an admission lasts without a purchase (ADMIT_TTL,
	// default 10m: two hold lifetimes).
	AdmitTTL time.Duration
	// MaxSeatsPerFan caps seats held plus bought per fan and event
	// (MAX_SEATS_PER_FAN, default 6).
	MaxSeatsPerFan int
	// PaymentWindow is how long holds are extended at checkout
	// (PAYMENT_WINDOW, default 2m: the slowest payment we wait for).
	PaymentWindow time.Duration
	// AllowedOrigins are extra host patterns allowed to open sockets and POST
	// (ALLOWED_ORIGINS, comma-separated; the server's own origin always is).
	AllowedOrigins []string
	// PushInterval is how often seat changes are batched out to each
	// connection (PUSH_INTERVAL, default 100ms: per-message CPU, not Redis,
	// limits fan-out, so batching is what scales).
	PushInterval time.Duration
	// PushBudget is how many WebSocket messages per second seat-change
	// batches may cost the process (PUSH_BUDGET, default 30000; 0:
	// unlimited), while it serves no requests; requests in flight take
	// their share (realtime.Options.Busy). Over it, changes coalesce into
	// fewer batches.
	PushBudget int
	// HoldCooldown is how long a fan must wait to re-hold a seat whose hold
	// of theirs expired unpaid (HOLD_COOLDOWN, default 1m): it stops one fan
	// from keeping seats off the market by re-holding them forever.
	HoldCooldown time.Duration
	// Limits are the per-session and per-address rate limits of the write
	// paths (RATE_LIMIT_PER_ADDRESS, requests/s; 0 disables the address
	// limit, as load tests from one machine need).
	Limits web.Limits
	// MaxConnsPerAddress caps open sockets per client address
	// (MAX_CONNS_PER_ADDRESS, default 2000; 0 = no cap, for load tests).
	MaxConnsPerAddress int
	// ShutdownTimeout bounds graceful shutdown (10s per API.md).
	ShutdownTimeout time.Duration
	// Migrate applies migrations at start (default true; --no-migrate).
	Migrate bool
	// Workers runs the admitter, outbox relay, recovery and reconciler in
	// this process (default true; --no-workers for web-only processes).
	Workers bool
	// Pprof mounts /debug/pprof/ behind staff auth (PPROF=1 or --pprof).
	Pprof bool
}

// LoadConfig reads the configuration from getenv and validates it. Errors
// name the offending variable.
func LoadConfig(getenv func(string) string) (Config, error) {
	c := Config{
		Addr:               "127.0.0.1:8080",
		HoldTTL:            5 * time.Minute,
		AdmitRate:          500,
		AdmitTTL:           10 * time.Minute,
		MaxSeatsPerFan:     6,
		PaymentWindow:      2 * time.Minute,
		PushInterval:       100 * time.Millisecond,
		PushBudget:         30_000,
		HoldCooldown:       time.Minute,
		MaxConnsPerAddress: 2000,
		Limits:             web.DefaultLimits(),
		ShutdownTimeout:    10 * time.Second,
		Migrate:            true,
		Workers:            true,
	}
	var errs []string
	str := func(name string, dst *string) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			*dst = v
		}
	}
	dur := func(name string, dst *time.Duration) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Sprintf("%s: %q is not a positive duration (use Go syntax such as 300ms or 5m)", name, v))
			return
		}
		*dst = d
	}
	num := func(name string, dst *int, min int) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			errs = append(errs, fmt.Sprintf("%s: %q is not a whole number ≥ %d", name, v, min))
			return
		}
		*dst = n
	}
	str("ADDR", &c.Addr)
	str("DATABASE_URL", &c.DatabaseURL)
	str("REDIS_URL", &c.RedisURL)
	str("STAFF_TOKEN", &c.StaffToken)
	if s := getenv("SESSION_SECRET"); s != "" {
		c.SessionSecret = []byte(s)
	}
	dur("HOLD_TTL", &c.HoldTTL)
	num("ADMIT_RATE", &c.AdmitRate, 0)
	dur("ADMIT_TTL", &c.AdmitTTL)
	num("MAX_SEATS_PER_FAN", &c.MaxSeatsPerFan, 1)
	dur("PAYMENT_WINDOW", &c.PaymentWindow)
	dur("PUSH_INTERVAL", &c.PushInterval)
	num("PUSH_BUDGET", &c.PushBudget, 0)
	dur("HOLD_COOLDOWN", &c.HoldCooldown)
	num("MAX_CONNS_PER_ADDRESS", &c.MaxConnsPerAddress, 0)
	if v := strings.TrimSpace(getenv("RATE_LIMIT_PER_ADDRESS")); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Sprintf("RATE_LIMIT_PER_ADDRESS: %q is not a number ≥ 0", v))
		} else {
			c.Limits.AddressRate, c.Limits.AddressBurst = n, int(2*n)
		}
	}
	if v := getenv("ALLOWED_ORIGINS"); strings.TrimSpace(v) != "" {
		for _, o := range strings.Split(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.AllowedOrigins = append(c.AllowedOrigins, o)
			}
		}
	}
	if v := getenv("PPROF"); v == "1" || v == "true" {
		c.Pprof = true
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return c, c.Validate()
}

// Validate checks the configuration and fills in generated secrets. Errors
// name the offending variable.
func (c *Config) Validate() error {
	var errs []string
	if c.DatabaseURL == "" {
		errs = append(errs, "DATABASE_URL: required (a Postgres URL such as postgres://user@127.0.0.1:5432/seatmap)")
	} else if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		errs = append(errs, fmt.Sprintf("DATABASE_URL: %q is not a postgres:// URL", redact(c.DatabaseURL)))
	}
	if c.RedisURL == "" {
		errs = append(errs, "REDIS_URL: required (such as redis://127.0.0.1:6379/0)")
	} else if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		errs = append(errs, fmt.Sprintf("REDIS_URL: %q is not a redis:// URL", redact(c.RedisURL)))
	}
	if c.Addr == "" {
		errs = append(errs, "ADDR: empty")
	}
	if c.PaymentWindow > 30*time.Minute {
		errs = append(errs, "PAYMENT_WINDOW: at most 30m")
	}
	if c.HoldTTL < time.Second {
		errs = append(errs, "HOLD_TTL: at least 1s")
	}
	if c.PushInterval < 10*time.Millisecond || c.PushInterval > 10*time.Second {
		errs = append(errs, "PUSH_INTERVAL: between 10ms and 10s")
	}
	if c.SessionSecret != nil && len(c.SessionSecret) < 16 {
		errs = append(errs, "SESSION_SECRET: at least 16 bytes")
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	if c.SessionSecret == nil {
		c.SessionSecret = randomBytes(32)
		c.SessionSecretRandom = true
	}
	if c.StaffToken == "" {
		c.StaffToken = hex.EncodeToString(randomBytes(16))
		c.StaffTokenRandom = true
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return b
}

// redact hides a URL's password for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
