package booking_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"seatmap/booking"
	"seatmap/internal/testenv"
)

// env is one test's world: a Service over the package's database and the
// test Redis, with a Sandbox payment provider on its own pool.
type env struct {
	t    testing.TB
	db   *pgxpool.Pool
	rdb  *redis.Client
	pay  *booking.Sandbox
	svc  *booking.Service
	cfg  booking.Config
	ev   string
	logs *slog.Logger
}

// newEnv creates an event with sections × rows × seatsPerRow seats at
// price cents each (section i costs price*(i+1)) and a Service on it.
func newEnv(t testing.TB, cfg booking.Config, sections, rows, seatsPerRow int, price int64) *env {
	t.Helper()
	e := &env{t: t, db: testenv.DB(t), rdb: testenv.Redis(t), ev: testenv.EventID(t)}
	e.pay = booking.NewSandbox(testenv.DB(t))
	e.logs = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	e.svc = booking.NewService(e.db, e.rdb, e.pay, cfg, e.logs, nil)
	e.cfg = e.svc.Config()
	ne := booking.NewEvent{ID: e.ev, Name: "Test " + e.ev, Venue: "Hall", StartsAt: time.Now().Add(24 * time.Hour),
		OnSaleAt: time.Now().Add(-time.Hour)}
	for i := range sections {
		ne.Sections = append(ne.Sections, booking.NewSection{Name: "S" + string(rune('A'+i)), PriceCents: price * int64(i+1),
			Rows: rows, SeatsPerRow: seatsPerRow})
	}
	if _, err := e.svc.CreateEvent(context.Background(), ne); err != nil {
		t.Fatalf("create event: %v", err)
	}
	t.Cleanup(func() {
		// Leave no keys of this event behind.
		ctx := context.Background()
		iter := e.rdb.Scan(ctx, 0, "*{"+e.ev+"}*", 1000).Iterator()
		for iter.Next(ctx) {
			e.rdb.Del(ctx, iter.Val())
		}
	})
	return e
}

// recoverer returns a second Service on the same backends whose clock runs
// an hour ahead, so every unfinished checkout looks stale to it, scoped to
// this env's event.
func (e *env) recoverer() *booking.Service {
	r := booking.NewService(e.db, e.rdb, e.pay, e.cfg, e.logs, func() time.Time { return time.Now().Add(time.Hour) })
	booking.ScopeToEvent(r, e.ev)
	return r
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) mustHold(fan string, seats ...string) booking.HoldSet {
	e.t.Helper()
	hs, err := e.svc.Hold(context.Background(), e.ev, fan, seats, nil)
	if err != nil {
		e.t.Fatalf("hold %v for %s: %v", seats, fan, err)
	}
	return hs
}

func (e *env) checkoutReq(fan, key, card string) booking.CheckoutRequest {
	return booking.CheckoutRequest{EventID: e.ev, FanID: fan, IdempotencyKey: key, Card: card, Email: fan + "@example.com"}
}

func (e *env) mustCheckout(fan, key string) booking.Order {
	e.t.Helper()
	o, err := e.svc.Checkout(context.Background(), e.checkoutReq(fan, key, booking.CardApprove))
	if err != nil {
		e.t.Fatalf("checkout for %s: %v", fan, err)
	}
	return o
}

// wantCode fails unless err is a *booking.Error with code.
func wantCode(tb testing.TB, err error, code string) *booking.Error {
	tb.Helper()
	var be *booking.Error
	if !errors.As(err, &be) || be.Code != code {
		tb.Fatalf("got error %v, want code %s", err, code)
	}
	return be
}

// queryInt runs a one-integer query.
func (e *env) queryInt(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("query %q: %v", sql, err)
	}
	return n
}

// checkoutState returns the state of the fan's checkout with key.
func (e *env) checkoutState(fan, key string) string {
	e.t.Helper()
	var st string
	if err := e.db.QueryRow(context.Background(), `SELECT state FROM checkouts WHERE event_id = $1 AND session_id = $2 AND idem_key = $3`,
		e.ev, fan, key).Scan(&st); err != nil {
		e.t.Fatalf("checkout state: %v", err)
	}
	return st
}

// paymentStatus returns the sandbox status of the fan's checkout with key.
func (e *env) paymentStatus(fan, key string) string {
	e.t.Helper()
	var st string
	if err := e.db.QueryRow(context.Background(), `SELECT p.status FROM sandbox_payments p
		JOIN checkouts c ON p.idempotency_key = 'checkout:' || c.id::text
		WHERE c.event_id = $1 AND c.session_id = $2 AND c.idem_key = $3`, e.ev, fan, key).Scan(&st); err != nil {
		e.t.Fatalf("payment status: %v", err)
	}
	return st
}

// waitGone polls until the Redis key no longer exists.
func (e *env) waitGone(key string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.rdb.Exists(context.Background(), key).Val() == 1 {
		if time.Now().After(deadline) {
			e.t.Fatalf("key %s did not expire", key)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not synchronising
	}
}

func (e *env) holdKey(seat string) string { return "hold:{" + e.ev + "}:" + seat }

func (e *env) smembers(key string) []string {
	e.t.Helper()
	m, err := e.rdb.SMembers(context.Background(), key).Result()
	if err != nil {
		e.t.Fatalf("smembers %s: %v", key, err)
	}
	slices.Sort(m)
	return m
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func testenvURL(t testing.TB) string { return testenv.DatabaseURL(t) }
