package booking_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seatmap/booking"
)

var errCrash = errors.New("simulated crash")

// crashAt returns a crash hook that dies at step.
func crashAt(step string) func(string) error {
	return func(s string) error {
		if s == step {
			return errCrash
		}
		return nil
	}
}

func (e *env) mustRecover(r *booking.Service) booking.RecoveryReport {
	e.t.Helper()
	rep, err := r.RecoverCheckouts(context.Background())
	if err != nil {
		e.t.Fatalf("recover: %v", err)
	}
	return rep
}

func (e *env) streamEntries() []redis.XMessage {
	e.t.Helper()
	msgs, err := e.rdb.XRange(context.Background(), "stream:{"+e.ev+"}", "-", "+").Result()
	if err != nil {
		e.t.Fatalf("xrange: %v", err)
	}
	return msgs
}

func TestCrashAfterAuthorizeBeforeCommit(t *testing.T) {
	t.Parallel()
	t.Run("seats still held: recovery commits and captures", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, booking.Config{}, 1, 1, 4, 1500)
		booking.SetCrashHook(e.svc, crashAt("authorized"))
		e.mustHold("fan", "A-1-1", "A-1-2")
		_, err := e.svc.Checkout(context.Background(), e.checkoutReq("fan", "k", booking.CardApprove))
		if !errors.Is(err, errCrash) {
			t.Fatalf("checkout: %v", err)
		}
		// A live checkout records the card's approval in the sale
		// transaction: stranded before it, the row is still authorizing
		// and recovery finds the payment by its key.
		if st, pst := e.checkoutState("fan", "k"), e.paymentStatus("fan", "k"); st != "authorizing" || pst != booking.PaymentAuthorized {
			t.Fatalf("after crash: checkout %s, payment %s", st, pst)
		}
		if rep := e.mustRecover(e.svc); rep.Scanned != 0 {
			t.Fatalf("a fresh checkout was recovered: %+v", rep)
		}
		rep := e.mustRecover(e.recoverer())
		if rep.Committed != 1 || rep.Completed != 1 {
			t.Fatalf("report %+v", rep)
		}
		if st := e.checkoutState("fan", "k"); st != "completed" {
			t.Fatalf("state %s", st)
		}
		if st := e.paymentStatus("fan", "k"); st != booking.PaymentCaptured {
			t.Fatalf("payment %s", st)
		}
		if n := e.queryInt(`SELECT count(*) FROM seats WHERE event_id = $1 AND status = 'sold'`, e.ev); n != 2 {
			t.Fatalf("%d seats sold", n)
		}
		if e.rdb.Exists(context.Background(), e.holdKey("A-1-1")).Val() != 0 {
			t.Fatal("hold left after recovery")
		}
		o, err := e.svc.Checkout(context.Background(), e.checkoutReq("fan", "k", booking.CardApprove))
		if err != nil || o.TotalCents != 3000 || !slices.Equal(o.Seats, []string{"A-1-1", "A-1-2"}) {
			t.Fatalf("replay after recovery: %+v, %v", o, err)
		}
	})
	t.Run("seats bought by another fan meanwhile: recovery voids", func(t *testing.T) {
		t.Parallel()
		e := crashedAfterAuthorize(t)
		booking.SetCrashHook(e.svc, nil)
		e.mustHold("other", "A-1-1")
		e.mustCheckout("other", "k")

		rep := e.mustRecover(e.recoverer())
		if rep.Voided != 1 || rep.Failed != 1 || rep.Committed != 0 {
			t.Fatalf("report %+v", rep)
		}
		if st := e.paymentStatus("fan", "k"); st != booking.PaymentVoided {
			t.Fatalf("payment %s", st)
		}
		_, err := e.svc.Checkout(context.Background(), e.checkoutReq("fan", "k", booking.CardApprove))
		wantCode(t, err, booking.ECodeHoldLost)
	})
	t.Run("seat held by another fan after the hold lapsed: recovery voids", func(t *testing.T) {
		t.Parallel()
		e := crashedAfterAuthorize(t)
		e.mustHold("other", "A-1-1")
		rep := e.mustRecover(e.recoverer())
		if rep.Voided != 1 || rep.Committed != 0 {
			t.Fatalf("report %+v", rep)
		}
		if n := e.queryInt(`SELECT count(*) FROM seats WHERE event_id = $1 AND status = 'sold'`, e.ev); n != 0 {
			t.Fatal("seat sold under another fan's hold")
		}
	})
}

func TestAuthorizeAnswerLost(t *testing.T) {
	t.Parallel()
	t.Run("charged but the answer was lost: recovery looks it up and completes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, booking.Config{}, 1, 1, 4, 1500)
		e.pay.FailAfter = true
		e.pay.Fail = func(op string) error {
			if op == "authorize" {
				return errors.New("connection reset")
			}
			return nil
		}
		e.mustHold("fan", "A-1-3")
		_, err := e.svc.Checkout(context.Background(), e.checkoutReq("fan", "k", booking.CardApprove))
		wantCode(t, err, booking.ECodeUnavailable)
		if st := e.checkoutState("fan", "k"); st != "authorizing" {
			t.Fatalf("state %s", st)
		}
		rep := e.mustRecover(e.recoverer())
		if rep.Committed != 1 || rep.Completed != 1 {
			t.Fatalf("report %+v", rep)
		}
		if n := e.queryInt(`SELECT count(*) FROM sandbox_payments p JOIN checkouts c ON p.idempotency_key = 'checkout:' || c.id::text
			WHERE c.event_id = $1`, e.ev); n != 1 {
			t.Fatalf("%d payments, want exactly one charge", n)
		}
		if st := e.paymentStatus("fan", "k"); st != booking.PaymentCaptured {
			t.Fatalf("payment %s", st)
		}
	})
	t.Run("never charged: recovery fails the checkout", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, booking.Config{}, 1, 1, 4, 1500)
		e.pay.Fail = func(op string) error {
			if op == "authorize" {
				return errors.New("timeout")
			}
			return nil
		}
		e.mustHold("fan", "A-1-3")
		_, err := e.svc.Checkout(context.Background(), e.checkoutReq("fan", "k", booking.CardApprove))
		wantCode(t, err, booking.ECodeUnavailable)
		rep := e.mustRecover(e.recoverer())
		if rep.Failed != 1 {
			t.Fatalf("report %+v", rep)
		}
		if st := e.checkoutState("fan", "k"); st != "failed" {
			t.Fatalf("state %s", st)
		}
		if v := e.rdb.Get(context.Background(), e.holdKey("A-1-3")).Val(); v != "fan|0" {
			t.Fatalf("hold = %q, want kept", v)
		}
	})
}

func TestCrashAfterCommitBeforeCapture(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 4, 1500)
	booking.SetCrashHook(e.svc, crashAt("committed"))
	e.mustHold("fan", "A-1-1", "A-1-2")
	o, err := e.svc.Checkout(context.Background(), e.checkoutReq("fan", "k", booking.CardApprove))
	if !errors.Is(err, errCrash) {
		t.Fatalf("checkout: %v", err)
	}
	if st, pst := e.checkoutState("fan", "k"), e.paymentStatus("fan", "k"); st != "committed" || pst != booking.PaymentAuthorized {
		t.Fatalf("after crash: checkout %s, payment %s", st, pst)
	}
	replay, err := e.svc.Checkout(context.Background(), e.checkoutReq("fan", "k", booking.CardApprove))
	if err != nil || replay.ID != o.ID {
		t.Fatalf("replay of a committed checkout: %+v, %v; want order %s", replay, err, o.ID)
	}
	rep := e.mustRecover(e.recoverer())
	if rep.Completed != 1 || rep.Committed != 0 {
		t.Fatalf("report %+v", rep)
	}
	if st := e.paymentStatus("fan", "k"); st != booking.PaymentCaptured {
		t.Fatalf("payment %s", st)
	}
	if got := e.smembers("sold:{" + e.ev + "}"); !slices.Equal(got, []string{"A-1-1", "A-1-2"}) {
		t.Fatalf("sold set %v", got)
	}
	if e.rdb.Exists(context.Background(), e.holdKey("A-1-1"), e.holdKey("A-1-2")).Val() != 0 {
		t.Fatal("holds left")
	}
	if rep := e.mustRecover(e.recoverer()); rep.Scanned != 0 {
		t.Fatalf("second pass found work: %+v", rep)
	}
}

func TestCrashAfterCommitBeforeRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 4, 1500)
	booking.ScopeToEvent(e.svc, e.ev)
	e.mustHold("fan", "A-1-4")
	o := e.mustCheckout("fan", "k")
	if n := len(e.streamEntries()); n != 0 {
		t.Fatalf("%d stream entries before the relay ran", n)
	}
	if n := e.queryInt(`SELECT count(*) FROM outbox WHERE event_id = $1 AND sent_at IS NULL`, e.ev); n != 1 {
		t.Fatalf("%d unsent outbox rows", n)
	}
	n, err := e.svc.RelayOutbox(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("relay: %d, %v", n, err)
	}
	msgs := e.streamEntries()
	if len(msgs) != 1 {
		t.Fatalf("%d stream entries", len(msgs))
	}
	v := msgs[0].Values
	if v["kind"] != "seats_sold" || v["order_id"] != o.ID || v["fan"] != "fan" || v["seats"] != `["A-1-4"]` || v["outbox_id"] == "" {
		t.Fatalf("entry %v", v)
	}
	if n, err := e.svc.RelayOutbox(context.Background()); err != nil || n != 0 {
		t.Fatalf("second relay: %d, %v", n, err)
	}
}

func TestRelayDiesAfterPublishing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 6, 1500)
	booking.ScopeToEvent(e.svc, e.ev)
	e.mustHold("ana", "A-1-1")
	e.mustCheckout("ana", "k")
	e.mustHold("bob", "A-1-2", "A-1-3")
	e.mustCheckout("bob", "k")

	booking.SetCrashHook(e.svc, crashAt("relay_published"))
	if _, err := e.svc.RelayOutbox(context.Background()); !errors.Is(err, errCrash) {
		t.Fatalf("relay: %v", err)
	}
	booking.SetCrashHook(e.svc, nil)
	if n, err := e.svc.RelayOutbox(context.Background()); err != nil || n != 2 {
		t.Fatalf("relay after restart: %d, %v", n, err)
	}
	if n, err := e.svc.RelayOutbox(context.Background()); err != nil || n != 0 {
		t.Fatalf("third relay: %d, %v", n, err)
	}

	// A consumer de-duplicating by outbox_id sees each row once and exactly
	// one duplicate of each.
	msgs := e.streamEntries()
	seen := map[string]int{}
	var order []int64
	for _, m := range msgs {
		id := m.Values["outbox_id"].(string)
		if seen[id] == 0 {
			n, _ := strconv.ParseInt(id, 10, 64)
			order = append(order, n)
		}
		seen[id]++
	}
	if len(msgs) != 4 || len(seen) != 2 {
		t.Fatalf("%d entries, %d distinct ids: %v", len(msgs), len(seen), seen)
	}
	for id, n := range seen {
		if n != 2 {
			t.Fatalf("outbox %s seen %d times, want 2", id, n)
		}
	}
	if !slices.IsSorted(order) {
		t.Fatalf("outbox ids out of order: %v", order)
	}
}

// startRelay runs svc's relay (scoped to e's event, polling only hourly,
// so only a wake-up makes it drain) until the test ends, and returns once
// it listens.
// It returns a count of the wake-ups by a sale of svc's own process.
func (e *env) startRelay(svc *booking.Service) *atomic.Int32 {
	e.t.Helper()
	booking.ScopeToEvent(svc, e.ev)
	booking.SetRelayPoll(svc, time.Hour)
	waiting := make(chan struct{}, 1)
	woken := new(atomic.Int32)
	booking.SetCrashHook(svc, func(step string) error {
		switch step {
		case "relay_waiting":
			select {
			case waiting <- struct{}{}:
			default:
			}
		case "relay_woken":
			woken.Add(1)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// An operator's DATABASE_URL may carry the pool's settings; the
		// relay's own connection must not pass them to Postgres.
		svc.RunRelay(ctx, withPoolSettings(testenvURL(e.t)))
	}()
	e.t.Cleanup(func() { cancel(); <-done })
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		e.t.Fatal("relay did not start listening")
	}
	return woken
}

// waitRelayed waits until the event's outbox is sent and its stream has
// want entries.
func (e *env) waitRelayed(want int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.queryInt(`SELECT count(*) FROM outbox WHERE event_id = $1 AND sent_at IS NULL`, e.ev) != 0 {
		if time.Now().After(deadline) {
			e.t.Fatal("relay did not publish")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
	if n := len(e.streamEntries()); n != want {
		e.t.Fatalf("%d stream entries, want %d", n, want)
	}
}

// A sale wakes the relay of its own process at once.
func TestRunRelayWakesOnLocalSale(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 4, 1500)
	woken := e.startRelay(e.svc)
	e.mustHold("fan", "A-1-1")
	e.mustCheckout("fan", "k")
	e.waitRelayed(1)
	// Not by a NOTIFY (other tests' sales send them too).
	if woken.Load() == 0 {
		t.Fatal("the relay was not woken by its own process's sale")
	}
}

// A sale committed by a process that runs no relay (serve --no-workers)
// wakes the others' with a NOTIFY.
func TestRunRelayWakesOnNotify(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 4, 1500)
	other := booking.NewService(e.db, e.rdb, e.pay, booking.Config{}, e.logs, nil)
	e.startRelay(other)
	e.mustHold("fan", "A-1-1")
	e.mustCheckout("fan", "k") // through e.svc, which runs no relay
	e.waitRelayed(1)
}

func TestRecoveryAbandonsStartedCheckouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 4, 1500)
	if _, err := e.db.Exec(context.Background(), `INSERT INTO checkouts (event_id, session_id, idem_key, id, request_hash, email, state)
		VALUES ($1, 'fan', 'k', gen_random_uuid(), 'h', 'fan@example.com', 'started')`, e.ev); err != nil {
		t.Fatal(err)
	}
	rep := e.mustRecover(e.recoverer())
	if rep.Abandoned != 1 {
		t.Fatalf("report %+v", rep)
	}
	e.mustHold("fan", "A-1-1")
	if o := e.mustCheckout("fan", "k"); len(o.Seats) != 1 {
		t.Fatalf("order %+v", o)
	}
}

// crashedAfterAuthorize returns an event where fan's checkout (key "k") of
// A-1-1 crashed right after the card was authorized and the hold has since
// lapsed: the checkout is stranded in authorizing, its card authorized, for
// the recovery worker.
func crashedAfterAuthorize(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, booking.Config{HoldTTL: 300 * time.Millisecond, PaymentWindow: 100 * time.Millisecond, MinHoldLeft: 10 * time.Millisecond}, 1, 1, 4, 1500)
	booking.SetCrashHook(e.svc, crashAt("authorized"))
	e.mustHold("fan", "A-1-1")
	_, err := e.svc.Checkout(context.Background(), e.checkoutReq("fan", "k", booking.CardApprove))
	if !errors.Is(err, errCrash) {
		t.Fatalf("checkout: %v", err)
	}
	e.waitGone(e.holdKey("A-1-1"))
	return e
}
