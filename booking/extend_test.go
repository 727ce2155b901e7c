package booking_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"seatmap/booking"
)

func TestExtendHolds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{HoldTTL: 30 * time.Second, HoldCooldown: 10 * time.Second, MaxSeatsPerFan: 4}, 1, 2, 5, 1000)
	ctx := ctxT(t)
	pttl := func(key string) time.Duration {
		t.Helper()
		d, err := e.rdb.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatalf("pttl %s: %v", key, err)
		}
		return d
	}
	within := func(what string, got, want time.Duration) {
		t.Helper()
		if got < want-3*time.Second || got > want+time.Second {
			t.Fatalf("%s = %v, want about %v", what, got, want)
		}
	}
	extendedKey := "extended:{" + e.ev + "}:ana"

	t.Run("a fan holding nothing is refused and keeps the extension", func(t *testing.T) {
		_, err := e.svc.ExtendHolds(ctx, e.ev, "ana", 20*time.Second)
		be := wantCode(t, err, booking.ECodeBadRequest)
		if be.Message != "You have no seats on hold to extend." {
			t.Fatalf("message = %q", be.Message)
		}
		if used, err := e.svc.HoldsExtended(ctx, e.ev, "ana"); err != nil || used {
			t.Fatalf("HoldsExtended = %v, %v; want false", used, err)
		}
	})

	t.Run("every live hold is lengthened by the amount, cool-downs and the set with them", func(t *testing.T) {
		e.mustHold("ana", "A-1-1", "A-1-2")
		e.mustHold("bob", "A-2-1")
		e.rdb.PExpire(ctx, e.holdKey("A-1-2"), 10*time.Second)
		hs, err := e.svc.ExtendHolds(ctx, e.ev, "ana", 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(hs.Seats, []string{"A-1-1", "A-1-2"}) {
			t.Fatalf("seats = %v", hs.Seats)
		}
		within("A-1-1 hold", pttl(e.holdKey("A-1-1")), 50*time.Second)
		within("A-1-2 hold", pttl(e.holdKey("A-1-2")), 30*time.Second)
		within("expires_at (the earliest hold)", time.Until(hs.ExpiresAt), 30*time.Second)
		within("A-1-1 cool-down", pttl("cool:{"+e.ev+"}:ana:A-1-1"), 60*time.Second)
		if got := pttl("fanholds:{" + e.ev + "}:ana"); got < 47*time.Second {
			t.Fatalf("fan's hold set lives %v, shorter than its longest hold", got)
		}
		within("bob's untouched hold", pttl(e.holdKey("A-2-1")), 30*time.Second)
		if v := e.rdb.Get(ctx, e.holdKey("A-1-1")).Val(); v != "ana|0" {
			t.Fatalf("hold value changed to %q", v)
		}
	})

	t.Run("the use is recorded until the event starts", func(t *testing.T) {
		if used, err := e.svc.HoldsExtended(ctx, e.ev, "ana"); err != nil || !used {
			t.Fatalf("HoldsExtended = %v, %v; want true", used, err)
		}
		within("record lifetime", pttl(extendedKey), 24*time.Hour)
	})

	t.Run("a second extension is refused in words and changes nothing", func(t *testing.T) {
		before := pttl(e.holdKey("A-1-1"))
		_, err := e.svc.ExtendHolds(ctx, e.ev, "ana", 20*time.Second)
		be := wantCode(t, err, booking.ECodeBadRequest)
		if be.Message != "You already used your extension." {
			t.Fatalf("message = %q", be.Message)
		}
		if after := pttl(e.holdKey("A-1-1")); after > before {
			t.Fatalf("hold grew from %v to %v", before, after)
		}
	})

	t.Run("the extension counts against nothing else", func(t *testing.T) {
		hs := e.mustHold("ana", "A-1-3", "A-1-4")
		if len(hs.Seats) != 4 {
			t.Fatalf("seats = %v, want the limit of 4 still reachable", hs.Seats)
		}
		within("a new hold after the extension", pttl(e.holdKey("A-1-3")), 30*time.Second)
	})

	t.Run("amounts outside (0, HoldTTL] are bad requests", func(t *testing.T) {
		for _, by := range []time.Duration{0, -time.Second, 31 * time.Second} {
			_, err := e.svc.ExtendHolds(ctx, e.ev, "bob", by)
			wantCode(t, err, booking.ECodeBadRequest)
		}
		_, err := e.svc.ExtendHolds(ctx, "no-such-event", "bob", time.Second)
		wantCode(t, err, booking.ECodeNotFound)
		_, err = e.svc.ExtendHolds(ctx, e.ev, "bad fan", time.Second)
		wantCode(t, err, booking.ECodeBadRequest)
	})

	t.Run("parallel requests extend once", func(t *testing.T) {
		e.mustHold("cyd", "A-2-5")
		var ok, used int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				_, err := e.svc.ExtendHolds(context.Background(), e.ev, "cyd", 10*time.Second)
				mu.Lock()
				defer mu.Unlock()
				switch booking.ErrorCode(err) {
				case "":
					ok++
				case booking.ECodeBadRequest:
					used++
				default:
					t.Errorf("extend: %v", err)
				}
			})
		}
		wg.Wait()
		if ok != 1 || used != 7 {
			t.Fatalf("%d extensions succeeded and %d were refused, want 1 and 7", ok, used)
		}
		within("cyd's hold", pttl(e.holdKey("A-2-5")), 40*time.Second)
	})
}

func TestHeldSeats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 2, 2, 3, 1000)
	ctx := ctxT(t)

	none, err := e.svc.HeldSeats(ctx, e.ev)
	if err != nil || len(none) != 0 {
		t.Fatalf("HeldSeats of an untouched event = %v, %v", none, err)
	}
	e.mustHold("ana", "A-1-1", "B-2-3")
	e.mustHold("bob", "A-1-2")
	if err := e.svc.Release(ctx, e.ev, "ana", "A-1-1"); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.HeldSeats(ctx, e.ev)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"B-2-3": "ana", "A-1-2": "bob"}; !maps.Equal(got, want) {
		t.Fatalf("HeldSeats = %v, want %v", got, want)
	}
	if _, err := e.svc.HeldSeats(ctx, "no-such-event"); booking.ErrorCode(err) != booking.ECodeNotFound {
		t.Fatalf("unknown event: %v", err)
	}
}
