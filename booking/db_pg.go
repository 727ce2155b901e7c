package booking

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"seatmap/booking/migrations"
)

// DefaultPoolSize is the connections a server's pool opens at most when
// DATABASE_URL does not say (pool_max_conns). Postgres does the most work
// with a few busy backends per core: on the 2-core machine of issue 7, with
// Postgres, Redis, the server and the load generator on it, 8 connections
// sold 18-40 % more orders per second than 32 and used a quarter less
// Postgres CPU per order; 4 and 12 were slower than 8 (PERFORMANCE.md,
// eighth round).
const DefaultPoolSize = 8

// OpenDB connects a pgx pool to url and checks that the server answers within
// the context's deadline. maxConns (if > 0) is the pool's size unless url
// sets pool_max_conns. The caller closes the pool.
func OpenDB(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if maxConns > 0 && !setsPoolSize(url) {
		cfg.MaxConns = maxConns
	}
	cfg.ConnConfig.ConnectTimeout = 3 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// setsPoolSize reports whether the connection string (URL or key=value
// form) sets pool_max_conns. pgxpool.ParseConfig consumes the setting and
// keeps no trace of whether it was given, so the string is parsed again the
// way pgconn does, which keeps unknown settings as run-time parameters.
func setsPoolSize(url string) bool {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return false
	}
	_, ok := cfg.RuntimeParams["pool_max_conns"]
	return ok
}

// connConfig parses url for a single connection. It accepts, and drops,
// the pool's settings (pool_max_conns and the like), which Postgres would
// refuse as unknown parameters.
func connConfig(url string) (*pgx.ConnConfig, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	return cfg.ConnConfig, nil
}

// Migrate applies every pending embedded migration to the database at url.
// It is safe to run from several processes at once: a Postgres session-level
// advisory lock serialises them, and applied versions are recorded in the
// goose_db_version table. It returns the versions it applied.
func Migrate(ctx context.Context, url string) ([]int64, error) {
	cfg, err := connConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = 3 * time.Second
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	db.SetMaxOpenConns(2)
	return migrateDB(ctx, db)
}

func migrateDB(ctx context.Context, db *sql.DB) ([]int64, error) {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 120))
	if err != nil {
		return nil, fmt.Errorf("migrate: create locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	applied := make([]int64, 0, len(res))
	for _, r := range res {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// inTx runs fn in one transaction: committed if fn returns nil, rolled back
// otherwise. Nothing may be published from fn; write an outbox row instead.
func inTx(ctx context.Context, db *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db, fn)
}

// execLazy runs one statement as its own transaction committed without
// waiting for its WAL to reach disk (synchronous_commit off, for that
// transaction only), in one round trip. Only for writes whose loss in a
// Postgres crash is repaired: the commit is visible at once, and it is
// durable no later than the next synchronous commit, since WAL is flushed
// in order.
func execLazy(ctx context.Context, db *pgxpool.Pool, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	b := lazyCommitBatch()
	// A batch is one implicit transaction, so the transaction-local setting
	// holds until its commit.
	b.Queue(sql, args...).Exec(func(ct pgconn.CommandTag) error {
		tag = ct
		return nil
	})
	err := db.SendBatch(ctx, b).Close()
	return tag, err
}

// lazyCommitBatch returns a batch whose first statement makes the
// transaction it runs in commit without waiting for the WAL flush
// (synchronous_commit off until that transaction ends); the caller queues
// the writes after it, sent in the same round trip.
func lazyCommitBatch() *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue("SELECT set_config('synchronous_commit', 'off', true)")
	return b
}

// isUniqueViolation reports whether err is Postgres's unique_violation
// (SQLSTATE 23505), optionally on the named constraint.
func isUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		return false
	}
	return constraint == "" || pe.ConstraintName == constraint
}

// ErrUnavailable is the domain error for a backend (Postgres, Redis, the
// payment provider) that could not be reached or did not answer in time.
var ErrUnavailable = &Error{Code: ECodeUnavailable, Message: "the service is temporarily unavailable, please retry"}

// unavailable wraps a storage failure as ErrUnavailable, keeping the cause
// and what was being done for the logs.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}
