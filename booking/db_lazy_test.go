package booking_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"seatmap/booking"
	"seatmap/internal/testenv"
)

// TestExecLazy: the statement runs with synchronous_commit off, its own
// command tag comes back, it is committed, and the setting does not leak
// into the connection's next transaction.
func TestExecLazy(t *testing.T) {
	ctx := ctxT(t)
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1 // every statement below on the same connection
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(ctx, `CREATE TEMP TABLE lazy_probe (setting text)`); err != nil {
		t.Fatal(err)
	}

	tag, err := booking.ExecLazy(ctx, db, `INSERT INTO lazy_probe SELECT current_setting('synchronous_commit') FROM generate_series(1, $1)`, 3)
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 3 || !tag.Insert() {
		t.Fatalf("command tag %q, want the INSERT's with 3 rows", tag)
	}
	var in, after string
	var n int
	if err := db.QueryRow(ctx, `SELECT min(setting), count(*) FROM lazy_probe`).Scan(&in, &n); err != nil {
		t.Fatal(err)
	}
	if in != "off" || n != 3 {
		t.Fatalf("inside: synchronous_commit %q over %d rows, want off over 3", in, n)
	}
	if err := db.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != "on" {
		t.Fatalf("after: synchronous_commit %q, want on (the setting leaked)", after)
	}

	// A failing statement commits nothing and reports its error.
	if _, err := booking.ExecLazy(ctx, db, `INSERT INTO lazy_probe VALUES ($1), (1/0)::text`, "x"); err == nil {
		t.Fatal("division by zero: no error")
	}
	if err := db.QueryRow(ctx, `SELECT count(*) FROM lazy_probe`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("after a failed statement: %d rows (%v), want 3", n, err)
	}
}
