package booking_test

import (
	"context"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"seatmap/booking"
)

// mustFreshDB creates an empty database for migration tests and returns its URL.
func mustFreshDB(tb testing.TB, name string) string {
	tb.Helper()
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		tb.Fatal("DATABASE_URL is not set: run the tests with `make test`")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		tb.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	u, _ := url.Parse(admin)
	u.Path = "/" + name
	return u.String()
}

func TestMigrateTwiceAppliesOnce(t *testing.T) {
	u := mustFreshDB(t, "t_migrate_twice")
	ctx := context.Background()
	first, err := booking.Migrate(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 {
		t.Fatal("first run applied nothing")
	}
	second, err := booking.Migrate(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 0 {
		t.Fatalf("second run applied %v, want nothing", second)
	}
}

func TestMigrateConcurrentlyIsSafe(t *testing.T) {
	u := mustFreshDB(t, "t_migrate_concurrent")
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([][]int64, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = booking.Migrate(ctx, u)
		}()
	}
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrator %d: %v", i, err)
		}
		total += len(results[i])
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var versions, distinct int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&versions, &distinct); err != nil {
		t.Fatal(err)
	}
	if versions != distinct || total != distinct {
		t.Fatalf("recorded %d versions (%d distinct), applied %d in total: each migration must apply exactly once", versions, distinct, total)
	}
}
