package booking_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"seatmap/booking"
)

func TestReconcile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 6, 1000)
	ctx := context.Background()
	repairs := recordRepairs(e)

	e.mustHold("ana", "A-1-1", "A-1-2")
	e.mustCheckout("ana", "k")

	// Break Redis: lose a sold seat and a bought seat, invent a sale and a
	// purchase, and put a hold on a sold seat.
	sold, bought := "sold:{"+e.ev+"}", "fanbought:{"+e.ev+"}:ana"
	e.rdb.SRem(ctx, sold, "A-1-2")
	e.rdb.SAdd(ctx, sold, "A-1-5")
	e.rdb.SRem(ctx, bought, "A-1-1")
	e.rdb.SAdd(ctx, bought, "A-1-6")
	e.rdb.Set(ctx, e.holdKey("A-1-1"), "mallory|0", time.Minute)

	rep, err := e.svc.Reconcile(ctx, e.ev)
	if err != nil {
		t.Fatal(err)
	}
	want := booking.ReconcileReport{EventID: e.ev, SoldAdded: 1, SoldRemoved: 1, FanBoughtAdded: 1, FanBoughtRemoved: 1, HoldsDeleted: 1}
	if rep != want {
		t.Fatalf("report %+v, want %+v", rep, want)
	}
	if got := e.smembers(sold); !slices.Equal(got, []string{"A-1-1", "A-1-2"}) {
		t.Fatalf("sold %v", got)
	}
	if got := e.smembers(bought); !slices.Equal(got, []string{"A-1-1", "A-1-2"}) {
		t.Fatalf("fanbought %v", got)
	}
	if e.rdb.Exists(ctx, e.holdKey("A-1-1")).Val() != 0 {
		t.Fatal("hold on a sold seat survived")
	}
	if fixed := repairs(); fixed["sold_added"] != 1 || fixed["holds_deleted"] != 1 || fixed["fanbought_removed"] != 1 {
		t.Fatalf("hooks saw %v", fixed)
	}

	t.Run("a second pass finds nothing to fix", func(t *testing.T) {
		rep, err := e.svc.Reconcile(ctx, e.ev)
		if err != nil || rep.Fixed() != 0 {
			t.Fatalf("%+v, %v", rep, err)
		}
	})
	t.Run("unknown event is not_found", func(t *testing.T) {
		_, err := e.svc.Reconcile(ctx, "nope")
		wantCode(t, err, booking.ECodeNotFound)
	})
	t.Run("a Redis that lost everything is rebuilt", func(t *testing.T) {
		e.rdb.Del(ctx, sold, bought)
		rep, err := e.svc.Reconcile(ctx, e.ev)
		if err != nil || rep.SoldAdded != 2 || rep.FanBoughtAdded != 2 {
			t.Fatalf("%+v, %v", rep, err)
		}
		_, err = e.svc.Hold(ctx, e.ev, "bob", []string{"A-1-1"}, nil)
		wantCode(t, err, booking.ECodeSeatUnavailable)
	})
}

func TestStats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 2, 1, 5, 1000)
	ctx := context.Background()
	e.mustHold("ana", "A-1-1", "B-1-1")
	e.mustCheckout("ana", "k")
	e.mustHold("bob", "A-1-2", "A-1-3", "B-1-5")

	st, err := e.svc.Stats(ctx, e.ev)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sold != 2 || st.Held != 3 || st.Available != 5 || st.Orders != 1 || st.RevenueCents != 3000 {
		t.Fatalf("stats %+v", st)
	}
	if len(st.SalesPerMinute) != 60 {
		t.Fatalf("%d minutes", len(st.SalesPerMinute))
	}
	last := st.SalesPerMinute[59]
	if last.Seats != 2 || time.Since(last.Minute) > 2*time.Minute {
		t.Fatalf("current minute %+v", last)
	}
	total := 0
	for i, m := range st.SalesPerMinute {
		total += m.Seats
		if i > 0 && m.Minute.Sub(st.SalesPerMinute[i-1].Minute) != time.Minute {
			t.Fatalf("minutes not consecutive at %d", i)
		}
	}
	if total != 2 {
		t.Fatalf("sales per minute add up to %d", total)
	}
	_, err = e.svc.Stats(ctx, "nope")
	wantCode(t, err, booking.ECodeNotFound)
}

func TestHooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 4, 1000)
	booking.ScopeToEvent(e.svc, e.ev)
	var mu sync.Mutex
	seen := map[string]int{}
	note := func(k string) { mu.Lock(); seen[k]++; mu.Unlock() }
	e.svc.SetHooks(booking.Hooks{
		CheckoutDone:  func(outcome string, d time.Duration) { note("checkout:" + outcome) },
		CommitLatency: func(d time.Duration) { note("commit") },
		HoldDone:      func(outcome string) { note("hold:" + outcome) },
		RelayLag:      func(d time.Duration) { note("relay") },
	})
	e.mustHold("ana", "A-1-1")
	_, err := e.svc.Hold(context.Background(), e.ev, "bob", []string{"A-1-1"}, nil)
	wantCode(t, err, booking.ECodeSeatUnavailable)
	e.mustCheckout("ana", "k")
	_, err = e.svc.Checkout(context.Background(), e.checkoutReq("bob", "k", booking.CardApprove))
	wantCode(t, err, booking.ECodeHoldLost)
	if _, err := e.svc.RelayOutbox(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"hold:ok": 1, "hold:seat_unavailable": 1, "checkout:ok": 1, "checkout:hold_lost": 1, "commit": 1, "relay": 1}
	mu.Lock()
	defer mu.Unlock()
	for k, n := range want {
		if seen[k] != n {
			t.Fatalf("hooks saw %v, want %v", seen, want)
		}
	}
}

// A sale that has committed while its checkout is still finishing (here it
// stops after the commit) is not yet in Redis. The reconciler writes it
// ahead, harmlessly, and counts it as Finishing: a sale in flight is not a
// repair, and a drop has hundreds of them at every pass.
func TestReconcileSaleInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 6, 1000)
	ctx := context.Background()
	repairs := recordRepairs(e)

	e.mustHold("bob", "A-1-3")
	e.mustCheckout("bob", "k")
	sold := "sold:{" + e.ev + "}"
	e.rdb.SRem(ctx, sold, "A-1-3") // a real loss

	booking.SetCrashHook(e.svc, crashAt("committed"))
	e.mustHold("ana", "A-1-1", "A-1-2")
	if _, err := e.svc.Checkout(ctx, e.checkoutReq("ana", "k", booking.CardApprove)); !errors.Is(err, errCrash) {
		t.Fatalf("checkout: %v", err)
	}
	if st := e.checkoutState("ana", "k"); st != "committed" {
		t.Fatalf("ana's checkout is %s, want committed", st)
	}

	rep, err := e.svc.Reconcile(ctx, e.ev)
	if err != nil {
		t.Fatal(err)
	}
	// Ana's two seats, in the sold set and in her bought set.
	want := booking.ReconcileReport{EventID: e.ev, SoldAdded: 1, Finishing: 4}
	if rep != want {
		t.Fatalf("report %+v, want %+v", rep, want)
	}
	if rep.Fixed() != 1 {
		t.Fatalf("Fixed() = %d, want 1", rep.Fixed())
	}
	if got := e.smembers(sold); !slices.Equal(got, []string{"A-1-1", "A-1-2", "A-1-3"}) {
		t.Fatalf("sold %v", got)
	}
	if got := e.smembers("fanbought:{" + e.ev + "}:ana"); !slices.Equal(got, []string{"A-1-1", "A-1-2"}) {
		t.Fatalf("ana's bought set %v", got)
	}
	if e.rdb.Exists(ctx, e.holdKey("A-1-1"), e.holdKey("A-1-2")).Val() != 2 {
		t.Fatal("ana's holds were deleted: they go with her sale")
	}
	if fixed := repairs(); len(fixed) != 1 || fixed["sold_added"] != 1 {
		t.Fatalf("hooks saw %v, want only bob's lost seat", fixed)
	}
}

// recordRepairs counts the repairs e's reconciler reports through its
// hook, by kind; the function returns a copy of the counts so far.
func recordRepairs(e *env) func() map[string]int {
	var mu sync.Mutex
	fixed := map[string]int{}
	e.svc.SetHooks(booking.Hooks{Reconciled: func(kind string, n int) { mu.Lock(); fixed[kind] += n; mu.Unlock() }})
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(fixed)
	}
}
