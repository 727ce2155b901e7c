package booking_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"seatmap/booking"
)

// fanBoughtKey is the Redis mirror of a fan's bought seats, which the hold
// script counts for the per-fan limit.
func (e *env) fanBoughtKey(fan string) string { return "fanbought:{" + e.ev + "}:" + fan }

// fanSeatsSold counts the seats SQL has sold to fan's confirmed orders.
func (e *env) fanSeatsSold(fan string) int {
	e.t.Helper()
	return e.queryInt(`SELECT count(*) FROM seats s JOIN orders o ON o.event_id = s.event_id AND o.id = s.order_id
		WHERE s.event_id = $1 AND o.session_id = $2 AND o.status = 'confirmed' AND s.status = 'sold'`, e.ev, fan)
}

// TestSeatLimitAfterRedisLostBoughtSet: Redis forgets what a fan bought (a
// flush or restart; here only this fan's key is deleted, since Redis is
// shared by parallel tests), so the hold passes; the sale transaction
// counts the fan's confirmed orders and refuses.
func TestSeatLimitAfterRedisLostBoughtSet(t *testing.T) {
	t.Parallel()
	t.Run("checkout over the limit is seat_limit, voided, nothing sold", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, booking.Config{MaxSeatsPerFan: 2}, 1, 1, 4, 1000)
		ctx := context.Background()
		e.mustHold("fan", "A-1-1", "A-1-2")
		first := e.mustCheckout("fan", "k1")

		e.rdb.Del(ctx, e.fanBoughtKey("fan"))
		e.mustHold("fan", "A-1-3") // Redis no longer knows the fan bought 2

		_, err := e.svc.Checkout(ctx, e.checkoutReq("fan", "k2", booking.CardApprove))
		be := wantCode(t, err, booking.ECodeSeatLimit)
		if !strings.Contains(be.Message, "at most 2 seats per fan") || !strings.Contains(be.Message, "already bought 2") {
			t.Fatalf("message %q does not explain the limit", be.Message)
		}
		if n := e.queryInt(`SELECT count(*) FROM orders WHERE event_id = $1 AND session_id = 'fan'`, e.ev); n != 1 {
			t.Fatalf("%d orders, want only the first", n)
		}
		if n := e.queryInt(`SELECT count(*) FROM seats WHERE event_id = $1 AND id = 'A-1-3' AND status = 'available' AND order_id IS NULL`, e.ev); n != 1 {
			t.Fatal("A-1-3 was sold")
		}
		if n := e.fanSeatsSold("fan"); n != 2 {
			t.Fatalf("%d seats sold to the fan, want 2", n)
		}
		if st := e.paymentStatus("fan", "k2"); st != booking.PaymentVoided {
			t.Fatalf("payment of the refused checkout is %s, want voided", st)
		}
		if st := e.checkoutState("fan", "k2"); st != "failed" {
			t.Fatalf("checkout state %s, want failed", st)
		}
		if n := e.queryInt(`SELECT response_status FROM checkouts WHERE event_id = $1 AND session_id = 'fan' AND idem_key = 'k2'`, e.ev); n != 422 {
			t.Fatalf("stored status %d, want 422 (API.md: seat_limit)", n)
		}
		if st := e.paymentStatus("fan", "k1"); st != booking.PaymentCaptured {
			t.Fatalf("first payment is %s", st)
		}

		_, err = e.svc.Checkout(ctx, e.checkoutReq("fan", "k2", booking.CardApprove))
		if replay := wantCode(t, err, booking.ECodeSeatLimit); replay.Message != be.Message {
			t.Fatalf("replay %q differs from the first answer %q", replay.Message, be.Message)
		}
		if o, _, err := e.svc.Order(ctx, first.ID); err != nil || o.Status != booking.OrderConfirmed {
			t.Fatalf("first order %+v, %v", o, err)
		}
	})
	t.Run("recovery of a stranded checkout over the limit voids it with seat_limit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, booking.Config{MaxSeatsPerFan: 2}, 1, 1, 4, 1000)
		ctx := context.Background()
		e.mustHold("fan", "A-1-1", "A-1-2")
		e.mustCheckout("fan", "k1")
		e.rdb.Del(ctx, e.fanBoughtKey("fan"))
		e.mustHold("fan", "A-1-3")
		booking.SetCrashHook(e.svc, crashAt("authorized"))
		if _, err := e.svc.Checkout(ctx, e.checkoutReq("fan", "k2", booking.CardApprove)); !errors.Is(err, errCrash) {
			t.Fatalf("checkout: %v", err)
		}

		rep := e.mustRecover(e.recoverer())
		if rep.Voided != 1 || rep.Failed != 1 || rep.Committed != 0 {
			t.Fatalf("report %+v", rep)
		}
		if st := e.paymentStatus("fan", "k2"); st != booking.PaymentVoided {
			t.Fatalf("payment %s, want voided", st)
		}
		if n := e.fanSeatsSold("fan"); n != 2 {
			t.Fatalf("%d seats sold to the fan, want 2", n)
		}
		_, err := e.svc.Checkout(ctx, e.checkoutReq("fan", "k2", booking.CardApprove))
		wantCode(t, err, booking.ECodeSeatLimit)
	})
}

// TestSeatLimitConcurrentCheckoutsOfOneFan: one fan runs two checkouts at
// once, each within the limit alone, together over it, while Redis has
// forgotten what the fan bought. Both sale transactions are made to run
// together: the test locks the event's row, which each sale's order INSERT
// must share (its foreign key), so a sale that got past the limit check
// waits there until the test lets go. The per-fan lock must keep the
// second from counting before the first commits.
func TestSeatLimitConcurrentCheckoutsOfOneFan(t *testing.T) {
	t.Parallel()
	const limit = 4
	e := newEnv(t, booking.Config{MaxSeatsPerFan: limit}, 1, 1, 6, 1000)
	ctx := context.Background()
	e.mustHold("fan", "A-1-5")
	e.mustCheckout("fan", "k0") // 1 bought; 2 + 2 more would make 5
	e.rdb.Del(ctx, e.fanBoughtKey("fan"))

	// Each authorization waits at the provider until both checkouts have
	// claimed their seats and written their rows.
	entered, release := make(chan struct{}), make(chan struct{})
	e.pay.Fail = func(op string) error {
		if op == "authorize" {
			entered <- struct{}{}
			<-release
		}
		return nil
	}

	type result struct {
		o   booking.Order
		err error
	}
	results := make([]result, 2)
	var wg sync.WaitGroup
	start := func(i int, key string) {
		wg.Go(func() {
			o, err := e.svc.Checkout(ctx, e.checkoutReq("fan", key, booking.CardApprove))
			results[i] = result{o, err}
		})
	}
	e.mustHold("fan", "A-1-1", "A-1-2")
	start(0, "k1")
	<-entered
	// The first checkout has claimed A-1-1 and A-1-2 (their versions are
	// recorded); releasing the holds lets the fan hold two others for a
	// second checkout without touching the first one's sale.
	for _, seat := range []string{"A-1-1", "A-1-2"} {
		if err := e.svc.Release(ctx, e.ev, "fan", seat); err != nil {
			t.Fatalf("release %s: %v", seat, err)
		}
	}
	e.mustHold("fan", "A-1-3", "A-1-4")
	start(1, "k2")
	<-entered

	// Both sales now run against the locked event row. Without the
	// per-fan lock both count one seat bought and wait at their order's
	// INSERT; with it, the second waits for the first's lock instead. Either
	// way two sales wait on the test, directly or through the other.
	tx, err := e.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var me int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid() FROM events WHERE id = $1 FOR UPDATE`, e.ev).Scan(&me); err != nil {
		t.Fatalf("lock the event: %v", err)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := e.db.QueryRow(ctx, `WITH direct AS (SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))
			SELECT (SELECT count(*) FROM direct) + (SELECT count(*) FROM pg_stat_activity a
				WHERE EXISTS (SELECT 1 FROM direct d WHERE d.pid = ANY(pg_blocking_pids(a.pid))))`, me).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sales wait on the locked event after 10 s, want 2", waiting)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	var won, refused int
	for i, r := range results {
		switch {
		case r.err == nil:
			won++
		case booking.ErrorCode(r.err) == booking.ECodeSeatLimit:
			refused++
			if st := e.paymentStatus("fan", []string{"k1", "k2"}[i]); st != booking.PaymentVoided {
				t.Errorf("refused checkout's payment is %s, want voided", st)
			}
		default:
			t.Errorf("checkout %d: %v", i, r.err)
		}
	}
	if n := e.fanSeatsSold("fan"); n > limit {
		t.Fatalf("%d seats sold to one fan, limit %d", n, limit)
	}
	if won != 1 || refused != 1 {
		t.Fatalf("%d checkouts won and %d were refused, want 1 and 1", won, refused)
	}
	if n := e.fanSeatsSold("fan"); n != 3 {
		t.Fatalf("%d seats sold to the fan, want 3", n)
	}
}
