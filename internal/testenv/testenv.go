// Package testenv gives tests real Postgres and Redis from the services that
// `make test` starts (DATABASE_URL, REDIS_URL). Each test package gets its own
// freshly migrated database, so packages run in parallel; tests within a
// package isolate themselves by using their own event ids (EventID), since
// every Redis key and SQL row of seatmap is scoped by event.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"seatmap/booking"
)

var (
	dbOnce sync.Once
	dbURL  string
	dbErr  error
)

// DatabaseURL returns the URL of this test package's own migrated database,
// creating it (dropping any left from an earlier run) on first use.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	dbOnce.Do(func() { dbURL, dbErr = createPackageDB() })
	if dbErr != nil {
		tb.Fatalf("testenv: %v", dbErr)
	}
	return dbURL
}

// WithQuery is url with the query parameters query ("k=v&k2=v2") added.
func WithQuery(url, query string) string {
	if strings.Contains(url, "?") {
		return url + "&" + query
	}
	return url + "?" + query
}

func createPackageDB() (string, error) {
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		return "", fmt.Errorf("DATABASE_URL is not set: run the tests with `make test` (or scripts/services up .data and export what it prints)")
	}
	wd, _ := os.Getwd()
	name := "t_" + regexp.MustCompile(`[^a-z0-9_]`).ReplaceAllString(strings.ToLower(filepath.Base(wd)), "_")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to DATABASE_URL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	if _, err := booking.Migrate(ctx, u.String()); err != nil {
		return "", err
	}
	return u.String(), nil
}

// DB returns a pool on this package's database, closed when tb ends.
func DB(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := booking.OpenDB(ctx, DatabaseURL(tb), 20)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// RedisURL returns the test Redis's URL.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("REDIS_URL")
	if u == "" {
		tb.Fatal("testenv: REDIS_URL is not set: run the tests with `make test`")
	}
	return u
}

// Redis returns a client of the test Redis, closed when tb ends. Tests must
// only touch keys of their own events (see EventID).
func Redis(tb testing.TB) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(RedisURL(tb))
	if err != nil {
		tb.Fatalf("testenv: REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	tb.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		tb.Fatalf("testenv: redis: %v", err)
	}
	return c
}

// EventID returns an event id no other test uses.
func EventID(tb testing.TB) string {
	tb.Helper()
	var b [6]byte
	rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}
