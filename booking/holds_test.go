package booking_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seatmap/booking"
)

func TestHold(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{HoldTTL: 30 * time.Second}, 1, 2, 5, 1000)
	ctx := context.Background()

	t.Run("new holds succeed with fan|version values and the hold TTL", func(t *testing.T) {
		hs := e.mustHold("ana", "A-1-2", "A-1-1", "A-1-1")
		if !slices.Equal(hs.Seats, []string{"A-1-1", "A-1-2"}) {
			t.Fatalf("seats = %v", hs.Seats)
		}
		if left := time.Until(hs.ExpiresAt); left <= 25*time.Second || left > 31*time.Second {
			t.Fatalf("expires in %v, want about 30s", left)
		}
		if v := e.rdb.Get(ctx, e.holdKey("A-1-1")).Val(); v != "ana|0" {
			t.Fatalf("hold value = %q", v)
		}
		if got := e.smembers("fanholds:{" + e.ev + "}:ana"); !slices.Equal(got, []string{"A-1-1", "A-1-2"}) {
			t.Fatalf("fanholds = %v", got)
		}
		if ttl := e.rdb.PTTL(ctx, "fanholds:{"+e.ev+"}:ana").Val(); ttl < 25*time.Second {
			t.Fatalf("fanholds TTL %v shorter than the holds", ttl)
		}
	})
	t.Run("seats held by another fan refuse the whole request and are named", func(t *testing.T) {
		_, err := e.svc.Hold(ctx, e.ev, "bob", []string{"A-1-3", "A-1-2", "A-1-1"}, nil)
		be := wantCode(t, err, booking.ECodeSeatUnavailable)
		if !slices.Equal(be.Seats, []string{"A-1-1", "A-1-2"}) {
			t.Fatalf("seats = %v, want the two held ones", be.Seats)
		}
		if e.rdb.Exists(ctx, e.holdKey("A-1-3")).Val() != 0 {
			t.Fatal("A-1-3 was held although the request failed")
		}
	})
	t.Run("sold seats are unavailable", func(t *testing.T) {
		e.rdb.SAdd(ctx, "sold:{"+e.ev+"}", "A-2-5")
		be := wantCode(t, func() error { _, err := e.svc.Hold(ctx, e.ev, "bob", []string{"A-2-5"}, nil); return err }(), booking.ECodeSeatUnavailable)
		if !slices.Equal(be.Seats, []string{"A-2-5"}) {
			t.Fatalf("seats = %v", be.Seats)
		}
	})
	t.Run("holding a seat already held succeeds without extending it", func(t *testing.T) {
		e.rdb.PExpire(ctx, e.holdKey("A-1-1"), 10*time.Second)
		hs := e.mustHold("ana", "A-1-1", "A-1-3")
		if ttl := e.rdb.PTTL(ctx, e.holdKey("A-1-1")).Val(); ttl > 10*time.Second {
			t.Fatalf("A-1-1 was extended to %v", ttl)
		}
		if !slices.Equal(hs.Seats, []string{"A-1-1", "A-1-2", "A-1-3"}) {
			t.Fatalf("seats = %v", hs.Seats)
		}
		if left := time.Until(hs.ExpiresAt); left > 10*time.Second {
			t.Fatalf("expires_at is %v away, want the earliest hold (≤10s)", left)
		}
	})
	t.Run("Holds lists only live holds of the fan", func(t *testing.T) {
		e.rdb.Del(ctx, e.holdKey("A-1-3"))
		hs, err := e.svc.Holds(ctx, e.ev, "ana")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(hs.Seats, []string{"A-1-1", "A-1-2"}) {
			t.Fatalf("seats = %v", hs.Seats)
		}
		none, err := e.svc.Holds(ctx, e.ev, "nobody")
		if err != nil || len(none.Seats) != 0 || !none.ExpiresAt.IsZero() {
			t.Fatalf("holds of a fan without any = %+v, %v", none, err)
		}
	})
	t.Run("unknown event is not_found", func(t *testing.T) {
		_, err := e.svc.Hold(ctx, "no-such-event", "ana", []string{"A-1-1"}, nil)
		wantCode(t, err, booking.ECodeNotFound)
	})
}

func TestHoldValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{MaxSeatsPerFan: 3}, 1, 1, 5, 100)
	tests := []struct {
		name  string
		seats []string
		code  string
		bad   []string
	}{
		{"empty list is bad_request", nil, booking.ECodeBadRequest, nil},
		{"seat of another shape is invalid_seat", []string{"A-1-1", "A 1 1"}, booking.ECodeInvalidSeat, []string{"A 1 1"}},
		{"unknown seat is invalid_seat", []string{"Z-9-9", "A-1-1", "A-1-99"}, booking.ECodeInvalidSeat, []string{"Z-9-9", "A-1-99"}},
		{"more than the limit is seat_limit", []string{"A-1-1", "A-1-2", "A-1-3", "A-1-4"}, booking.ECodeSeatLimit, nil},
		{"duplicates count once", []string{"A-1-1", "A-1-1", "A-1-1", "A-1-1"}, "", nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.Hold(context.Background(), e.ev, fmt.Sprintf("v%d", i), tt.seats, nil)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			be := wantCode(t, err, tt.code)
			if tt.bad != nil && !slices.Equal(be.Seats, tt.bad) {
				t.Fatalf("seats = %v, want %v", be.Seats, tt.bad)
			}
		})
	}
	t.Run("invalid fan id is bad_request", func(t *testing.T) {
		_, err := e.svc.Hold(context.Background(), e.ev, "a|b", []string{"A-1-5"}, nil)
		wantCode(t, err, booking.ECodeBadRequest)
	})
}

func TestHoldPerFanLimitUnderParallelRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{MaxSeatsPerFan: 6}, 1, 2, 10, 100)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := range 20 {
		wg.Go(func() {
			_, err := e.svc.Hold(context.Background(), e.ev, "greedy", []string{fmt.Sprintf("A-%d-%d", i/10+1, i%10+1)}, nil)
			mu.Lock()
			codes[booking.ErrorCode(err)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[""] != 6 || codes[booking.ECodeSeatLimit] != 14 {
		t.Fatalf("outcomes %v, want 6 successes and 14 seat_limit", codes)
	}
	hs, err := e.svc.Holds(context.Background(), e.ev, "greedy")
	if err != nil || len(hs.Seats) != 6 {
		t.Fatalf("holds = %v (%v), want 6", hs.Seats, err)
	}
}

func TestHoldLimitCountsBoughtSeats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{MaxSeatsPerFan: 4}, 1, 1, 10, 100)
	e.mustHold("fan", "A-1-1", "A-1-2")
	e.mustCheckout("fan", "k1")
	e.mustHold("fan", "A-1-3")
	_, err := e.svc.Hold(context.Background(), e.ev, "fan", []string{"A-1-4", "A-1-5"}, nil)
	be := wantCode(t, err, booking.ECodeSeatLimit)
	if be.Message == "" {
		t.Fatal("seat_limit without a message")
	}
	e.mustHold("fan", "A-1-4")
}

func TestRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 5, 100)
	ctx := context.Background()
	e.mustHold("owner", "A-1-1")

	t.Run("another fan gets not_found and the hold stays", func(t *testing.T) {
		wantCode(t, e.svc.Release(ctx, e.ev, "thief", "A-1-1"), booking.ECodeNotFound)
		if e.rdb.Get(ctx, e.holdKey("A-1-1")).Val() != "owner|0" {
			t.Fatal("hold changed")
		}
	})
	t.Run("unknown seat is not_found", func(t *testing.T) {
		wantCode(t, e.svc.Release(ctx, e.ev, "owner", "Q-1-1"), booking.ECodeNotFound)
	})
	t.Run("the holder releases and starts no cool-down", func(t *testing.T) {
		if err := e.svc.Release(ctx, e.ev, "owner", "A-1-1"); err != nil {
			t.Fatal(err)
		}
		if e.rdb.Exists(ctx, e.holdKey("A-1-1")).Val() != 0 {
			t.Fatal("hold still there")
		}
		wantCode(t, e.svc.Release(ctx, e.ev, "owner", "A-1-1"), booking.ECodeNotFound)
		e.mustHold("owner", "A-1-1")
	})
}

func TestHoldCooldownAfterExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{HoldTTL: 150 * time.Millisecond, HoldCooldown: time.Minute}, 1, 1, 5, 100)
	ctx := context.Background()
	e.mustHold("bot", "A-1-1", "A-1-2")
	if err := e.svc.Release(ctx, e.ev, "bot", "A-1-2"); err != nil {
		t.Fatal(err)
	}
	e.waitGone(e.holdKey("A-1-1"))

	t.Run("the same fan cannot re-hold a lapsed seat", func(t *testing.T) {
		_, err := e.svc.Hold(ctx, e.ev, "bot", []string{"A-1-1"}, nil)
		be := wantCode(t, err, booking.ECodeSeatUnavailable)
		if !slices.Equal(be.Seats, []string{"A-1-1"}) {
			t.Fatalf("seats = %v", be.Seats)
		}
	})
	t.Run("a released seat has no cool-down", func(t *testing.T) {
		e.mustHold("bot", "A-1-2")
	})
	t.Run("another fan can hold the lapsed seat", func(t *testing.T) {
		e.mustHold("human", "A-1-1")
	})
	t.Run("the cool-down lasts HoldTTL + HoldCooldown from the hold", func(t *testing.T) {
		ttl := e.rdb.PTTL(ctx, "cool:{"+e.ev+"}:bot:A-1-1").Val()
		if ttl < 50*time.Second || ttl > time.Minute+150*time.Millisecond {
			t.Fatalf("cool-down key TTL %v", ttl)
		}
	})
}

// pipelineDepth is a go-redis hook that records the most EVALSHA commands
// seen in one pipeline.
type pipelineDepth struct {
	mu  sync.Mutex
	max int
}

func (h *pipelineDepth) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineDepth) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineDepth) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, c := range cmds {
			if c.Name() == "evalsha" {
				n++
			}
		}
		h.mu.Lock()
		h.max = max(h.max, n)
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// The scripts of concurrent holds and releases share pipelines (one write
// and one read for many requests) instead of a round trip each.
func TestConcurrentHoldsShareRedisRoundTrips(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 8, 8, 1000)
	depth := &pipelineDepth{}
	e.rdb.AddHook(depth)
	ctx := context.Background()
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 64 {
		fan, seat := fmt.Sprintf("fan%d", i), fmt.Sprintf("A-%d-%d", i/8+1, i%8+1)
		wg.Go(func() {
			<-start
			for range 20 {
				if _, err := e.svc.Hold(ctx, e.ev, fan, []string{seat}, nil); err != nil {
					t.Errorf("hold %s: %v", seat, err)
					return
				}
				if err := e.svc.Release(ctx, e.ev, fan, seat); err != nil {
					t.Errorf("release %s: %v", seat, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if depth.max < 2 {
		t.Fatalf("at most %d script(s) per Redis pipeline among 64 concurrent fans; want them batched", depth.max)
	}
	t.Logf("deepest pipeline: %d scripts", depth.max)
}
