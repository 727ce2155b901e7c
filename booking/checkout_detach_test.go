package booking_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"seatmap/booking"
)

// waitCheckoutState polls until the fan's checkout with key is in state.
func (e *env) waitCheckoutState(fan, key, state string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st string
		err := e.db.QueryRow(context.Background(), `SELECT state FROM checkouts WHERE event_id = $1 AND session_id = $2 AND idem_key = $3`,
			e.ev, fan, key).Scan(&st)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			e.t.Fatalf("checkout state: %v", err)
		}
		if st == state {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("checkout %s of %s is %q, never reached %s", key, fan, st, state)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, not synchronising
	}
}

// TestCheckoutSurvivesClientCancelDuringAuthorization: the client gives up
// (its context is cancelled) while a slow provider is authorizing the
// card. The checkout must finish on its own, so that a retry with the same
// key gets the order — not a 503 or an "in progress" conflict — and the
// card is authorized and captured once.
func TestCheckoutSurvivesClientCancelDuringAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 3, 1200)
	const latency = 600 * time.Millisecond
	e.pay.Latency = latency // every provider call, honouring its context
	e.mustHold("fan", "A-1-1", "A-1-2")
	req := e.checkoutReq("fan", "slow-key", booking.CardApprove)

	clientCtx, clientGivesUp := context.WithCancel(context.Background())
	defer clientGivesUp()
	type result struct {
		o   booking.Order
		err error
	}
	done := make(chan result, 1)
	began := time.Now()
	go func() {
		o, err := e.svc.Checkout(clientCtx, req)
		done <- result{o, err}
	}()
	// authorizing is written just before the provider is called; the
	// provider then takes `latency`, so the cancel lands mid-authorization.
	e.waitCheckoutState("fan", "slow-key", "authorizing")
	clientGivesUp()
	if time.Since(began) >= latency {
		t.Skip("the machine is too slow to cancel within the authorization")
	}
	first := <-done

	// The caller that kept waiting gets the real outcome too.
	if first.err != nil {
		t.Fatalf("checkout whose client gave up: %v", first.err)
	}
	replay, err := e.svc.Checkout(context.Background(), req)
	if err != nil {
		t.Fatalf("retry with the same key: %v", err)
	}
	if replay.ID != first.o.ID || !slices.Equal(replay.Seats, []string{"A-1-1", "A-1-2"}) || replay.TotalCents != 2400 ||
		!replay.CreatedAt.Equal(first.o.CreatedAt) {
		t.Fatalf("replay %+v, want the order %+v", replay, first.o)
	}
	if st := e.checkoutState("fan", "slow-key"); st != "completed" {
		t.Fatalf("checkout state %s, want completed", st)
	}
	if n := e.queryInt(`SELECT response_status FROM checkouts WHERE event_id = $1 AND session_id = 'fan' AND idem_key = 'slow-key'`, e.ev); n != 201 {
		t.Fatalf("stored status %d, want 201", n)
	}
	if n := e.queryInt(`SELECT count(*) FROM sandbox_payments p JOIN checkouts c ON p.idempotency_key = 'checkout:' || c.id::text
		WHERE c.event_id = $1 AND c.session_id = 'fan'`, e.ev); n != 1 {
		t.Fatalf("%d authorizations, want 1", n)
	}
	if st := e.paymentStatus("fan", "slow-key"); st != booking.PaymentCaptured {
		t.Fatalf("payment %s, want captured", st)
	}
	if n := e.queryInt(`SELECT count(*) FROM seats WHERE event_id = $1 AND status = 'sold' AND order_id = $2`, e.ev, first.o.ID); n != 2 {
		t.Fatalf("%d seats sold to the order, want 2", n)
	}
	if n := e.queryInt(`SELECT count(*) FROM orders WHERE event_id = $1`, e.ev); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
}
