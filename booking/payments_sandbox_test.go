package booking_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"seatmap/booking"
	"seatmap/internal/testenv"
)

func TestSandbox(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	p := booking.NewSandbox(db)
	ctx := context.Background()
	key := func(name string) string { return testenv.EventID(t) + "-" + name }

	t.Run("test cards approve or decline", func(t *testing.T) {
		cases := []struct {
			card, want string
		}{
			{booking.CardApprove, booking.PaymentAuthorized},
			{booking.CardDecline, booking.PaymentDeclined},
			{"5555555555554444", booking.PaymentDeclined},
		}
		for _, c := range cases {
			pay, err := p.Authorize(ctx, key(c.card), 1234, c.card)
			if err != nil || pay.Status != c.want || pay.AmountCents != 1234 || pay.ID == "" {
				t.Errorf("card %s: %+v, %v; want %s", c.card, pay, err, c.want)
			}
		}
	})
	t.Run("only the last four digits are stored", func(t *testing.T) {
		k := key("last4")
		if _, err := p.Authorize(ctx, k, 1, booking.CardApprove); err != nil {
			t.Fatal(err)
		}
		var last4 string
		if err := db.QueryRow(ctx, `SELECT card_last4 FROM sandbox_payments WHERE idempotency_key = $1`, k).Scan(&last4); err != nil || last4 != "4242" {
			t.Fatalf("card_last4 = %q, %v", last4, err)
		}
	})
	t.Run("authorize is idempotent by key", func(t *testing.T) {
		k := key("idem")
		a, err := p.Authorize(ctx, k, 500, booking.CardApprove)
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.Authorize(ctx, k, 999, booking.CardDecline)
		if err != nil || b != a {
			t.Fatalf("second authorize = %+v, %v; want %+v", b, err, a)
		}
		got, ok, err := p.Lookup(ctx, k)
		if err != nil || !ok || got != a {
			t.Fatalf("lookup = %+v, %v, %v", got, ok, err)
		}
		if _, ok, err := p.Lookup(ctx, key("never")); ok || err != nil {
			t.Fatalf("lookup of an unknown key: %v, %v", ok, err)
		}
	})
	t.Run("capture, void and refund are idempotent and guarded", func(t *testing.T) {
		a, _ := p.Authorize(ctx, key("cap"), 100, booking.CardApprove)
		for range 2 {
			if err := p.Capture(ctx, a.ID); err != nil {
				t.Fatalf("capture: %v", err)
			}
		}
		if err := p.Void(ctx, a.ID); err == nil {
			t.Fatal("voided a captured payment")
		}
		for range 2 {
			if err := p.Refund(ctx, a.ID); err != nil {
				t.Fatalf("refund: %v", err)
			}
		}
		v, _ := p.Authorize(ctx, key("void"), 100, booking.CardApprove)
		for range 2 {
			if err := p.Void(ctx, v.ID); err != nil {
				t.Fatalf("void: %v", err)
			}
		}
		if err := p.Capture(ctx, v.ID); err == nil {
			t.Fatal("captured a voided payment")
		}
		if err := p.Capture(ctx, "pay_unknown"); err == nil {
			t.Fatal("captured an unknown payment")
		}
	})
	t.Run("the slow card honours cancellation and records nothing", func(t *testing.T) {
		k := key("slow")
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := p.Authorize(cctx, k, 100, booking.CardSlow)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
			t.Fatalf("slow card with a 50ms deadline: %v after %v", err, time.Since(start))
		}
		if _, ok, _ := p.Lookup(ctx, k); ok {
			t.Fatal("a cancelled authorization was recorded")
		}
	})
	t.Run("the slow card approves after three seconds", func(t *testing.T) {
		if testing.Short() {
			t.Skip("3 s")
		}
		k := key("slow-ok")
		start := time.Now()
		pay, err := p.Authorize(ctx, k, 100, booking.CardSlow)
		if err != nil || pay.Status != booking.PaymentAuthorized || time.Since(start) < booking.SandboxSlowDelay {
			t.Fatalf("%+v, %v after %v", pay, err, time.Since(start))
		}
		// A retry with the key gets the first answer without waiting again.
		start = time.Now()
		again, err := p.Authorize(ctx, k, 100, booking.CardSlow)
		if err != nil || again != pay || time.Since(start) > booking.SandboxSlowDelay/2 {
			t.Fatalf("retry: %+v, %v after %v; want %+v at once", again, err, time.Since(start), pay)
		}
	})
}

func TestSandboxFaults(t *testing.T) {
	t.Parallel()
	db := testenv.DB(t)
	ctx := context.Background()
	boom := errors.New("boom")
	fail := func(op string) error {
		if op == "authorize" {
			return boom
		}
		return nil
	}

	t.Run("failure before the effect charges nothing", func(t *testing.T) {
		p := booking.NewSandbox(db)
		p.Fail = fail
		k := testenv.EventID(t)
		if _, err := p.Authorize(ctx, k, 1, booking.CardApprove); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if _, ok, _ := p.Lookup(ctx, k); ok {
			t.Fatal("payment recorded")
		}
	})
	t.Run("failure after the effect leaves the charge", func(t *testing.T) {
		p := booking.NewSandbox(db)
		p.Fail, p.FailAfter = fail, true
		k := testenv.EventID(t)
		if _, err := p.Authorize(ctx, k, 1, booking.CardApprove); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if pay, ok, _ := p.Lookup(ctx, k); !ok || pay.Status != booking.PaymentAuthorized {
			t.Fatalf("lookup = %+v, %v", pay, ok)
		}
	})
	t.Run("latency honours the context", func(t *testing.T) {
		p := booking.NewSandbox(db)
		p.Latency = time.Minute
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if _, _, err := p.Lookup(cctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	})
}
