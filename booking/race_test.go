package booking_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"seatmap/booking"
)

// TestThousandFansRaceForHundredSeats lets 1,000 concurrent fans hold 1–4
// random seats of 100 and check out (one in ten with the decline card),
// retrying up to three times. Holds are short and the provider's latency
// jitters past the payment window, so holds lapse mid-payment and the SQL
// version check, not Redis, has to stop double sales. Afterwards it checks
// the sale's invariants in SQL and in the payment records.
func TestThousandFansRaceForHundredSeats(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("long: 1,000 fans")
	}
	e := newEnv(t, booking.Config{HoldTTL: 3 * time.Second, PaymentWindow: time.Second,
		MinHoldLeft: 50 * time.Millisecond, HoldCooldown: time.Second}, 2, 5, 10, 1000)
	e.pay.Fail = func(op string) error {
		if op == "authorize" {
			time.Sleep(rand.N(1500 * time.Millisecond)) // the provider's latency, jittering past the window
		}
		return nil
	}
	cat, err := e.svc.Catalog(context.Background(), e.ev)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		orders = map[string][]string{} // order id → seats, from successful checkouts
		codes  = map[string]int{}
	)
	start := time.Now()
	for i := range 1000 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			fan := fmt.Sprintf("fan%04d", i)
			for attempt := range 3 {
				n := 1 + rng.IntN(4)
				seats := make([]string, n)
				for j := range seats {
					seats[j] = cat.Order[rng.IntN(len(cat.Order))]
				}
				_, herr := e.svc.Hold(ctx, e.ev, fan, seats, nil)
				card := booking.CardApprove
				if i%10 == 0 {
					card = booking.CardDecline
				}
				o, cerr := e.svc.Checkout(ctx, e.checkoutReq(fan, fmt.Sprintf("k%s-%d", fan, attempt), card))
				mu.Lock()
				codes["hold:"+booking.ErrorCode(herr)]++
				codes["checkout:"+booking.ErrorCode(cerr)]++
				if cerr == nil {
					orders[o.ID] = o.Seats
				}
				mu.Unlock()
				if cerr == nil || booking.ErrorCode(cerr) == booking.ECodePaymentDeclined {
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("1000 fans in %v: %v", time.Since(start).Round(time.Millisecond), codes)
	for code := range codes {
		switch code {
		case "hold:", "hold:seat_unavailable", "hold:seat_limit", "checkout:", "checkout:hold_lost", "checkout:payment_declined":
		default:
			t.Errorf("unexpected outcome %s ×%d", code, codes[code])
		}
	}
	t.Logf("authorizations voided: %d", e.queryInt(`SELECT count(*) FROM sandbox_payments p
		JOIN checkouts c ON p.idempotency_key = 'checkout:' || c.id::text WHERE c.event_id = $1 AND p.status = 'voided'`, e.ev))
	if len(orders) == 0 {
		t.Fatal("nobody bought anything")
	}

	checks := []struct {
		name string
		sql  string
		want int
	}{
		{"no seat is in two orders",
			`SELECT count(*) FROM (SELECT seat_id FROM order_items WHERE event_id = $1 GROUP BY seat_id HAVING count(*) > 1) d`, 0},
		{"sold seats equal order items",
			`SELECT (SELECT count(*) FROM seats WHERE event_id = $1 AND status = 'sold') - (SELECT count(*) FROM order_items WHERE event_id = $1)`, 0},
		{"every confirmed order's seats are sold to it",
			`SELECT count(*) FROM order_items i JOIN orders o ON o.event_id = i.event_id AND o.id = i.order_id
			 JOIN seats s ON s.event_id = i.event_id AND s.id = i.seat_id
			 WHERE i.event_id = $1 AND o.status = 'confirmed' AND (s.status <> 'sold' OR s.order_id <> i.order_id)`, 0},
		{"every order has items",
			`SELECT count(*) FROM orders o WHERE o.event_id = $1 AND NOT EXISTS (SELECT 1 FROM order_items i WHERE i.event_id = o.event_id AND i.order_id = o.id)`, 0},
		{"no authorization is left uncaptured and unvoided",
			`SELECT count(*) FROM sandbox_payments p JOIN checkouts c ON p.idempotency_key = 'checkout:' || c.id::text
			 WHERE c.event_id = $1 AND p.status = 'authorized'`, 0},
		{"captures equal confirmed orders",
			`SELECT (SELECT count(*) FROM sandbox_payments p JOIN checkouts c ON p.idempotency_key = 'checkout:' || c.id::text
			 WHERE c.event_id = $1 AND p.status = 'captured') - (SELECT count(*) FROM orders WHERE event_id = $1 AND status = 'confirmed')`, 0},
		{"every checkout finished",
			`SELECT count(*) FROM checkouts WHERE event_id = $1 AND state NOT IN ('completed', 'failed')`, 0},
		{"every successful answer is a confirmed order",
			`SELECT count(*) FROM orders WHERE event_id = $1 AND status = 'confirmed'`, len(orders)},
	}
	for _, c := range checks {
		if got := e.queryInt(c.sql, e.ev); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}
	for id, seats := range orders {
		got, _, err := e.svc.Order(context.Background(), id)
		if err != nil || len(got.Seats) != len(seats) {
			t.Errorf("order %s: %+v, %v; answered seats %v", id, got, err, seats)
		}
	}
	sold := e.queryInt(`SELECT count(*) FROM seats WHERE event_id = $1 AND status = 'sold'`, e.ev)
	if got := len(e.smembers("sold:{" + e.ev + "}")); got != sold {
		t.Errorf("sold:{E} has %d seats, SQL %d", got, sold)
	}
}
