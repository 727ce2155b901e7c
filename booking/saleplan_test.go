package booking_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"seatmap/booking"
	"seatmap/internal/testenv"
)

// An event created after the tables were last analyzed is not taken for one
// row by the planner (there are no statistics on event_id to say so), so a
// sale of it reads only the seats it sells, not every seat of the event;
// and a connection plans the sale's statements once (checkPlannedOnce).
func TestSaleOfNewEventReadsOnlyItsSeats(t *testing.T) {
	u := mustFreshDB(t, "t_sale_plan")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := booking.Migrate(ctx, u); err != nil {
		t.Fatal(err)
	}
	db, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	svc := booking.NewService(db, testenv.Redis(t), nil, booking.Config{}, nil, nil)
	create := func(id string) {
		t.Helper()
		_, err := svc.CreateEvent(ctx, booking.NewEvent{ID: id, Name: id, Venue: "Hall",
			StartsAt: time.Now().Add(24 * time.Hour), OnSaleAt: time.Now().Add(-time.Hour),
			Sections: []booking.NewSection{{Name: "A", PriceCents: 1000, Rows: 40, SeatsPerRow: 50}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Statistics gathered when only the first event existed, as a venue's
	// past events.
	create("past")
	if _, err := db.Exec(ctx, `INSERT INTO orders (event_id, id, session_id, email, status, total_cents, checkout_key)
		SELECT 'past', gen_random_uuid(), 'fan-' || g % 1000, 'fan@example.com', 'confirmed', 1000, 'k' || g
		FROM generate_series(1, 3000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	var withStats []string
	if err := queryStrings(ctx, db, &withStats, `SELECT c.table_name FROM information_schema.columns c
		JOIN pg_stats s ON s.schemaname = c.table_schema AND s.tablename = c.table_name AND s.attname = c.column_name
		WHERE c.table_schema = 'public' AND c.column_name = 'event_id' ORDER BY 1`); err != nil {
		t.Fatal(err)
	}
	if len(withStats) > 0 {
		t.Errorf("ANALYZE gathered statistics on event_id of %v", withStats)
	}
	create("drop")

	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	const order = "00000000-0000-4000-8000-000000000001"
	if _, err := tx.Exec(ctx, `INSERT INTO orders (event_id, id, session_id, email, status, total_cents, checkout_key)
		VALUES ('drop', $1, 'fan', 'fan@example.com', 'confirmed', 2000, 'k')`, order); err != nil {
		t.Fatal(err)
	}
	var plan []struct{ Plan planNode }
	sell, _, args, _ := booking.SaleSQL("drop", order, []string{"A-1-1", "A-1-2"}, []int32{0, 0})
	if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+sell, args...).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if n := countSold(t, tx, "drop"); n != 2 {
		t.Fatalf("sold %d seats, want 2", n)
	}
	if read := plan[0].Plan.seatsRead(); read > 10 {
		out, _ := json.MarshalIndent(plan, "", " ")
		t.Fatalf("selling 2 seats read %v rows of seats (the event has 2,000); plan:\n%s", read, out)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	checkPlannedOnce(ctx, t, u, "drop")

	// The per-fan count reads the fan's orders through an index (migration
	// 00004 dropped the one made for it, which duplicated a unique index).
	if err := db.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+booking.FanBoughtSQL, "drop", "fan").Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if scan := plan[0].Plan.scanOf("orders"); !strings.HasPrefix(scan, "Index") {
		out, _ := json.MarshalIndent(plan, "", " ")
		t.Fatalf("a fan's bought seats are counted with a %q of orders, want an index scan; plan:\n%s", scan, out)
	}
}

// scanOf is the node type of the plan's first scan of table.
func (n planNode) scanOf(table string) string {
	if n.Relation == table {
		return n.NodeType
	}
	for _, c := range n.Plans {
		if s := c.scanOf(table); s != "" {
			return s
		}
	}
	return ""
}

func queryStrings(ctx context.Context, db *pgxpool.Pool, out *[]string, sql string) error {
	rows, err := db.Query(ctx, sql)
	if err != nil {
		return err
	}
	*out, err = pgx.CollectRows(rows, pgx.RowTo[string])
	return err
}

// planNode is a node of EXPLAIN (ANALYZE, FORMAT JSON).
type planNode struct {
	NodeType        string     `json:"Node Type"`
	Relation        string     `json:"Relation Name"`
	ActualRows      float64    `json:"Actual Rows"`
	ActualLoops     float64    `json:"Actual Loops"`
	RemovedByFilter float64    `json:"Rows Removed by Filter"`
	Plans           []planNode `json:"Plans"`
}

// seatsRead is how many rows of seats the plan's scans looked at.
func (n planNode) seatsRead() float64 {
	total := 0.0
	if n.Relation == "seats" && n.NodeType != "ModifyTable" {
		total += (n.ActualRows + n.RemovedByFilter) * n.ActualLoops
	}
	for _, c := range n.Plans {
		total += c.seatsRead()
	}
	return total
}

func countSold(t *testing.T, tx pgx.Tx, event string) int {
	t.Helper()
	var n int
	if err := tx.QueryRow(context.Background(), `SELECT count(*) FROM seats WHERE event_id = $1 AND status = 'sold'`, event).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkPlannedOnce checks that the sale's statements for event's seats
// A-1-1 and A-1-2 are planned once per connection and shape, not on every
// sale: after Postgres's five trial runs the plan cache keeps the generic
// plan. It did not when the seats were one array parameter (the generic
// plan's cost, for an array of unknown length, was above the trial plans'),
// and planning then cost as much CPU as the sale.
func checkPlannedOnce(ctx context.Context, t *testing.T, url, event string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	const order = "00000000-0000-4000-8000-000000000002"
	var sell, items string
	for range 8 {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO orders (event_id, id, session_id, email, status, total_cents, checkout_key)
			VALUES ($1, $2, 'fan', 'fan@example.com', 'confirmed', 2000, 'k')`, event, order); err != nil {
			t.Fatal(err)
		}
		var sellArgs, itemArgs []any
		sell, items, sellArgs, itemArgs = booking.SaleSQL(event, order, []string{"A-1-1", "A-1-2"}, []int32{0, 0})
		if _, err := tx.Exec(ctx, sell, sellArgs...); err != nil { // it raises unless both seats sold
			t.Fatalf("sell: %v", err)
		}
		if tag, err := tx.Exec(ctx, items, itemArgs...); err != nil || tag.RowsAffected() != 2 {
			t.Fatalf("items: %v, %v rows", err, tag.RowsAffected())
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, stmt := range []string{sell, items} {
		var generic, custom int
		if err := conn.QueryRow(ctx, `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1`,
			stmt).Scan(&generic, &custom); err != nil {
			t.Fatalf("prepared statement of %q: %v", stmt, err)
		}
		if custom > 5 || generic < 3 {
			t.Errorf("8 runs of %q: %d custom plans, %d generic; want the generic plan kept after 5 trials", stmt, custom, generic)
		}
	}
}
