package booking_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"seatmap/booking"
)

func TestCheckoutRequestValidate(t *testing.T) {
	t.Parallel()
	ok := booking.CheckoutRequest{EventID: "ev1", FanID: "fan", IdempotencyKey: "k-1", Card: booking.CardApprove, Email: "fan@example.com"}
	tests := []struct {
		name string
		edit func(r *booking.CheckoutRequest)
		code string
	}{
		{"valid request passes", func(r *booking.CheckoutRequest) {}, ""},
		{"64-character key passes", func(r *booking.CheckoutRequest) { r.IdempotencyKey = strings.Repeat("k", 64) }, ""},
		{"key with spaces and punctuation passes", func(r *booking.CheckoutRequest) { r.IdempotencyKey = "order #1 (retry)" }, ""},
		{"12-digit card passes", func(r *booking.CheckoutRequest) { r.Card = "123456789012" }, ""},
		{"empty key is bad_request", func(r *booking.CheckoutRequest) { r.IdempotencyKey = "" }, booking.ECodeBadRequest},
		{"65-character key is bad_request", func(r *booking.CheckoutRequest) { r.IdempotencyKey = strings.Repeat("k", 65) }, booking.ECodeBadRequest},
		{"key with a newline is bad_request", func(r *booking.CheckoutRequest) { r.IdempotencyKey = "a\nb" }, booking.ECodeBadRequest},
		{"key with non-ASCII is bad_request", func(r *booking.CheckoutRequest) { r.IdempotencyKey = "clé" }, booking.ECodeBadRequest},
		{"card with letters is bad_request", func(r *booking.CheckoutRequest) { r.Card = "4242-4242-4242-4242" }, booking.ECodeBadRequest},
		{"11-digit card is bad_request", func(r *booking.CheckoutRequest) { r.Card = "12345678901" }, booking.ECodeBadRequest},
		{"20-digit card is bad_request", func(r *booking.CheckoutRequest) { r.Card = "12345678901234567890" }, booking.ECodeBadRequest},
		{"email without @ is bad_request", func(r *booking.CheckoutRequest) { r.Email = "fan.example.com" }, booking.ECodeBadRequest},
		{"email with display name is bad_request", func(r *booking.CheckoutRequest) { r.Email = "Fan <fan@example.com>" }, booking.ECodeBadRequest},
		{"email over 254 characters is bad_request", func(r *booking.CheckoutRequest) { r.Email = strings.Repeat("a", 250) + "@x.io" }, booking.ECodeBadRequest},
		{"empty email is bad_request", func(r *booking.CheckoutRequest) { r.Email = "" }, booking.ECodeBadRequest},
		{"bad fan id is bad_request", func(r *booking.CheckoutRequest) { r.FanID = "" }, booking.ECodeBadRequest},
		{"bad event id is not_found", func(r *booking.CheckoutRequest) { r.EventID = "../x" }, booking.ECodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.edit(&r)
			err := r.Validate()
			if tt.code == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			wantCode(t, err, tt.code)
		})
	}
}

func TestCheckout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 2, 1, 5, 2500)
	ctx := context.Background()

	t.Run("buys every held seat at server prices", func(t *testing.T) {
		e.mustHold("ana", "B-1-1", "A-1-2")
		o := e.mustCheckout("ana", "key-1")
		if o.Status != booking.OrderConfirmed || o.EventID != e.ev || !slices.Equal(o.Seats, []string{"A-1-2", "B-1-1"}) ||
			o.TotalCents != 2500+5000 || o.ID == "" || o.CreatedAt.IsZero() {
			t.Fatalf("order = %+v", o)
		}
		if n := e.queryInt(`SELECT count(*) FROM seats WHERE event_id = $1 AND status = 'sold' AND order_id = $2`, e.ev, o.ID); n != 2 {
			t.Fatalf("%d seats sold to the order, want 2", n)
		}
		if n := e.queryInt(`SELECT sum(price_cents)::int FROM order_items WHERE event_id = $1 AND order_id = $2`, e.ev, o.ID); n != 7500 {
			t.Fatalf("items total %d", n)
		}
		if st := e.checkoutState("ana", "key-1"); st != "completed" {
			t.Fatalf("checkout state %s", st)
		}
		if st := e.paymentStatus("ana", "key-1"); st != booking.PaymentCaptured {
			t.Fatalf("payment %s", st)
		}
		if got := e.smembers("sold:{" + e.ev + "}"); !slices.Equal(got, []string{"A-1-2", "B-1-1"}) {
			t.Fatalf("sold set %v", got)
		}
		if got := e.smembers("fanbought:{" + e.ev + "}:ana"); !slices.Equal(got, []string{"A-1-2", "B-1-1"}) {
			t.Fatalf("fanbought %v", got)
		}
		if e.rdb.Exists(ctx, e.holdKey("A-1-2"), e.holdKey("B-1-1"), "cool:{"+e.ev+"}:ana:A-1-2").Val() != 0 {
			t.Fatal("holds or cool-down keys left after the sale")
		}
		if n := e.queryInt(`SELECT count(*) FROM outbox WHERE event_id = $1 AND kind = 'seats_sold' AND payload->>'order_id' = $2`, e.ev, o.ID); n != 1 {
			t.Fatalf("%d outbox rows", n)
		}

		got, fan, err := e.svc.Order(ctx, o.ID)
		if err != nil || fan != "ana" || got.ID != o.ID || !slices.Equal(got.Seats, o.Seats) || got.TotalCents != o.TotalCents ||
			!got.CreatedAt.Equal(o.CreatedAt) {
			t.Fatalf("Order() = %+v, %q, %v; want %+v", got, fan, err, o)
		}
		replay := e.mustCheckout("ana", "key-1")
		if replay.ID != o.ID || !replay.CreatedAt.Equal(o.CreatedAt) {
			t.Fatalf("replay = %+v, want %+v", replay, o)
		}
		_, err = e.svc.Hold(ctx, e.ev, "bob", []string{"A-1-2"}, nil)
		wantCode(t, err, booking.ECodeSeatUnavailable)
	})
	t.Run("unknown and malformed order ids are not_found", func(t *testing.T) {
		_, _, err := e.svc.Order(ctx, "3f1c2d4e-0000-4000-8000-000000000000")
		wantCode(t, err, booking.ECodeNotFound)
		_, _, err = e.svc.Order(ctx, "nope")
		wantCode(t, err, booking.ECodeNotFound)
	})
	t.Run("no holds is hold_lost and charges nothing", func(t *testing.T) {
		_, err := e.svc.Checkout(ctx, e.checkoutReq("nobody", "k", booking.CardApprove))
		wantCode(t, err, booking.ECodeHoldLost)
		if n := e.queryInt(`SELECT count(*) FROM sandbox_payments p JOIN checkouts c ON p.idempotency_key = 'checkout:' || c.id::text
			WHERE c.event_id = $1 AND c.session_id = 'nobody'`, e.ev); n != 0 {
			t.Fatalf("%d payments", n)
		}
	})
	t.Run("a declined card is payment_declined, keeps the holds and replays the same", func(t *testing.T) {
		e.mustHold("carl", "A-1-4")
		_, err := e.svc.Checkout(ctx, e.checkoutReq("carl", "d1", booking.CardDecline))
		wantCode(t, err, booking.ECodePaymentDeclined)
		if v := e.rdb.Get(ctx, e.holdKey("A-1-4")).Val(); v != "carl|0" {
			t.Fatalf("hold after decline = %q", v)
		}
		if st := e.checkoutState("carl", "d1"); st != "failed" {
			t.Fatalf("state %s", st)
		}
		_, err = e.svc.Checkout(ctx, e.checkoutReq("carl", "d1", booking.CardDecline))
		wantCode(t, err, booking.ECodePaymentDeclined)
		_, err = e.svc.Checkout(ctx, e.checkoutReq("carl", "d1", "4000000000009995"))
		wantCode(t, err, booking.ECodeIdempotencyConflict)
		o, err := e.svc.Checkout(ctx, e.checkoutReq("carl", "d2", booking.CardApprove))
		if err != nil || !slices.Equal(o.Seats, []string{"A-1-4"}) {
			t.Fatalf("checkout with another card: %+v, %v", o, err)
		}
	})
	t.Run("a hold too close to expiry is hold_lost and charges nothing", func(t *testing.T) {
		e.mustHold("dora", "A-1-5")
		e.rdb.PExpire(ctx, e.holdKey("A-1-5"), time.Second) // below MinHoldLeft (2s)
		_, err := e.svc.Checkout(ctx, e.checkoutReq("dora", "x", booking.CardApprove))
		be := wantCode(t, err, booking.ECodeHoldLost)
		if !slices.Equal(be.Seats, []string{"A-1-5"}) {
			t.Fatalf("seats = %v", be.Seats)
		}
		if n := e.queryInt(`SELECT count(*) FROM checkouts WHERE event_id = $1 AND session_id = 'dora' AND payment_id IS NOT NULL`, e.ev); n != 0 {
			t.Fatal("a payment was made")
		}
	})
	t.Run("checkout extends holds to the payment window", func(t *testing.T) {
		e.mustHold("eve", "B-1-2")
		e.rdb.PExpire(ctx, e.holdKey("B-1-2"), 5*time.Second)
		_, err := e.svc.Checkout(ctx, e.checkoutReq("eve", "x", booking.CardDecline))
		wantCode(t, err, booking.ECodePaymentDeclined)
		if ttl := e.rdb.PTTL(ctx, e.holdKey("B-1-2")).Val(); ttl < time.Minute {
			t.Fatalf("hold TTL after checkout %v, want about the 2m payment window", ttl)
		}
	})
}

func TestCheckoutIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 4, 1000)
	ctx := context.Background()
	e.mustHold("fan", "A-1-1", "A-1-2")
	// Slow the provider so the two concurrent requests overlap.
	e.pay.Latency = 50 * time.Millisecond

	req := e.checkoutReq("fan", "same-key", booking.CardApprove)
	var wg sync.WaitGroup
	orders := make([]booking.Order, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { orders[i], errs[i] = e.svc.Checkout(ctx, req) })
	}
	wg.Wait()
	third, err3 := e.svc.Checkout(ctx, req)
	for i, err := range append(errs, err3) {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if orders[0].ID != orders[1].ID || third.ID != orders[0].ID {
		t.Fatalf("orders %s, %s, %s: want one", orders[0].ID, orders[1].ID, third.ID)
	}
	if n := e.queryInt(`SELECT count(*) FROM orders WHERE event_id = $1`, e.ev); n != 1 {
		t.Fatalf("%d orders", n)
	}
	if n := e.queryInt(`SELECT count(*) FROM sandbox_payments p JOIN checkouts c ON p.idempotency_key = 'checkout:' || c.id::text
		WHERE c.event_id = $1 AND p.status = 'captured'`, e.ev); n != 1 {
		t.Fatalf("%d captures", n)
	}

	t.Run("the same key with another body is idempotency_conflict", func(t *testing.T) {
		other := req
		other.Email = "someone-else@example.com"
		_, err := e.svc.Checkout(ctx, other)
		wantCode(t, err, booking.ECodeIdempotencyConflict)
	})
}

func TestCheckoutHoldExpiresDuringPayment(t *testing.T) {
	t.Parallel()
	cfg := booking.Config{HoldTTL: 300 * time.Millisecond, PaymentWindow: 200 * time.Millisecond, MinHoldLeft: 50 * time.Millisecond}
	e := newEnv(t, cfg, 1, 1, 2, 1000)
	ctx := context.Background()

	// The first authorization is slow: it waits until the test lets it go.
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	e.pay.Latency = 10 * time.Millisecond
	e.pay.Fail = func(op string) error {
		if op == "authorize" && calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return nil
	}

	e.mustHold("slow", "A-1-1")
	type result struct {
		o   booking.Order
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := e.svc.Checkout(ctx, e.checkoutReq("slow", "k", booking.CardApprove))
		done <- result{o, err}
	}()
	<-entered
	e.waitGone(e.holdKey("A-1-1")) // the payment window lapses mid-payment

	e.mustHold("fast", "A-1-1")
	won := e.mustCheckout("fast", "k")
	close(release)
	r := <-done

	be := wantCode(t, r.err, booking.ECodeHoldLost)
	if !slices.Equal(be.Seats, []string{"A-1-1"}) {
		t.Fatalf("hold_lost seats = %v", be.Seats)
	}
	if st := e.paymentStatus("slow", "k"); st != booking.PaymentVoided {
		t.Fatalf("slow fan's payment is %s, want voided", st)
	}
	if st := e.checkoutState("slow", "k"); st != "failed" {
		t.Fatalf("slow fan's checkout is %s", st)
	}
	// The refused sale left nothing: its order was inserted before the
	// seat's version check failed, in the same transaction.
	if n := e.queryInt(`SELECT count(*) FROM orders WHERE event_id = $1 AND session_id = 'slow'`, e.ev); n != 0 {
		t.Fatalf("the refused sale left %d orders", n)
	}
	if n := e.queryInt(`SELECT count(*) FROM seats WHERE event_id = $1 AND id = 'A-1-1' AND order_id = $2`, e.ev, won.ID); n != 1 {
		t.Fatal("seat not sold to the fast fan")
	}
	_, err := e.svc.Checkout(ctx, e.checkoutReq("slow", "k", booking.CardApprove))
	if replay := wantCode(t, err, booking.ECodeHoldLost); replay.Message != be.Message || !slices.Equal(replay.Seats, be.Seats) {
		t.Fatalf("replay %v differs from the first answer %v", replay, be)
	}
}
