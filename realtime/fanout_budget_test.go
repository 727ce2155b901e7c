package realtime

import (
	"context"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

func TestFanoutBudget(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	type step struct {
		after time.Duration // since t0
		conns int
		want  bool
	}
	tests := []struct {
		name      string
		perSecond int
		steps     []step
	}{
		{"unlimited", 0, []step{{0, 1_000_000, true}, {0, 1_000_000, true}}},
		{"no connections cost nothing", 10, []step{{0, 0, true}, {0, 5, true}, {0, 0, true}, {0, 1, false}}},
		{"starts with half a second", 10, []step{{0, 3, true}, {0, 2, true}, {0, 1, false}}},
		{"may go into debt once", 10, []step{{0, 4, true}, {0, 4, true}, {0, 1, false}}},
		{"refills at the rate", 10, []step{{0, 6, true}, {50 * time.Millisecond, 2, false}, {150 * time.Millisecond, 2, true}}},
		{"a huge room pays its debt first", 10, []step{{0, 10_000, true}, {500 * time.Second, 1, false}, {1000 * time.Second, 10_000, true}}},
		{"the balance is capped", 10, []step{{time.Hour, 5, true}, {time.Hour, 1, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFanoutBudget(tt.perSecond, nil)
			for i, s := range tt.steps {
				if got := b.allow(t0.Add(s.after), s.conns); got != s.want {
					t.Fatalf("step %d (%v, %d conns): allow = %v, want %v", i, s.after, s.conns, got, s.want)
				}
			}
		})
	}
}

// TestFanoutBudgetGivesWayToRequests: requests in flight shrink the rate
// and the balance's cap (half at busyScale, never below minShare).
func TestFanoutBudgetGivesWayToRequests(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	for _, tt := range []struct {
		busy  int
		share float64
	}{
		{0, 1},
		{busyScale, 0.5},
		{3 * busyScale, minShare},
		{1_000_000, minShare},
	} {
		var busy atomic.Int64
		busy.Store(int64(tt.busy))
		b := newFanoutBudget(100, func() int { return int(busy.Load()) })
		if got := b.share(); math.Abs(got-tt.share) > 1e-9 {
			t.Errorf("busy %d: share %v, want %v", tt.busy, got, tt.share)
		}
		// Spend the initial balance, then a second of refill at 100 f a
		// second, capped at 50 f, and spend one message: 50 f - 1 left.
		if !b.allow(t0, 50) || !b.allow(t0.Add(time.Second), 1) {
			t.Fatalf("busy %d: a spend with a positive balance was refused", tt.busy)
		}
		b.mu.Lock()
		bal := b.balance
		b.mu.Unlock()
		if want := 50*tt.share - 1; math.Abs(bal-want) > 1e-6 {
			t.Errorf("busy %d: balance after 1 s and one message = %v, want %v", tt.busy, bal, want)
		}
		// A tenth of a second refills 10 f: the debt of 10 f + 1 is not paid.
		b2 := newFanoutBudget(100, func() int { return int(busy.Load()) })
		b2.allow(t0, 50+int(10*tt.share)+1)
		if b2.allow(t0.Add(100*time.Millisecond), 1) {
			t.Errorf("busy %d: the refill was faster than the share", tt.busy)
		}
	}
	// Without a busy function the budget is the plain rate.
	if got := newFanoutBudget(100, nil).share(); got != 1 {
		t.Errorf("no busy func: share %v", got)
	}
}

// TestHub_FanoutBudgetCoalesces: with the budget spent, changes wait and go
// out together in fewer batches, and every map still ends up right.
func TestHub_FanoutBudgetCoalesces(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 1, 20)
	opts := fastHubOpts() // a tick every 20 ms
	opts.PushBudget = 4   // two sockets: a batch costs 2, so 2 a second
	in := e.newInstance(t, "a", opts, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	clients := []*fanClient{dialFan(t, ctx, in.wsURL("a"), "a"), dialFan(t, ctx, in.wsURL("b"), "b")}
	for _, c := range clients {
		if err := c.waitFor(ctx, "snapshot", func(c *fanClient) bool { return c.snapshots > 0 }); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for _, seat := range e.cat.Order { // 20 changes, one every 50 ms
		e.mustHold(t, seat, "other", time.Minute)
		time.Sleep(50 * time.Millisecond)
	}
	waitConverged(t, ctx, e, clients)
	elapsed := time.Since(start)
	// Unlimited, each hold would be its own batch (20). The budget allows
	// the initial burst (one batch) plus two a second.
	most := 1 + int(2*elapsed.Seconds()) + 1
	for _, c := range clients {
		c.mu.Lock()
		batches, seqErr := c.batches, c.seqErr
		c.mu.Unlock()
		if batches > most {
			t.Errorf("fan %s got %d batches in %v, budget allows at most %d", c.fan, batches, elapsed.Round(time.Millisecond), most)
		}
		if seqErr != nil {
			t.Errorf("fan %s: %v", c.fan, seqErr)
		}
	}
	if in.deferred.Load() == 0 {
		t.Error("no tick was deferred by the budget")
	}
}

// TestServeFan_QueuePositionsWithinBudget: positions spend the fan-out
// budget too; one held back goes out later, and the latest one wins.
func TestServeFan_QueuePositionsWithinBudget(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 1, 2)
	q := newFakeQueue()
	opts := fastHubOpts()
	opts.QueueInterval = 10 * time.Millisecond
	opts.PushBudget = 2 // a balance of one message, refilled every 500 ms
	in := e.newInstance(t, "a", opts, q)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	q.joined["w"] = QueueStatus{State: StateWaiting, Position: 9, Ahead: 8, ETASeconds: 9}
	c := dialFan(t, ctx, in.wsURL("w"), "w")
	if err := c.waitFor(ctx, "first position", func(c *fanClient) bool { return len(c.others) == 1 }); err != nil {
		t.Fatal(err)
	}
	<-q.watching
	start := time.Now()
	for pos := 8; pos >= 5; pos-- { // all within the first refill
		q.push("w", QueueStatus{State: StateWaiting, Position: pos, Ahead: pos - 1, ETASeconds: pos})
		time.Sleep(20 * time.Millisecond)
	}
	latest := func(c *fanClient) bool {
		return len(c.others) > 0 && c.others[len(c.others)-1]["position"] == float64(5)
	}
	if err := c.waitFor(ctx, "the latest position", latest); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	c.mu.Lock()
	n := len(c.others)
	c.mu.Unlock()
	if n > 3 {
		t.Errorf("%d position messages in %v, the budget allows about one per 500 ms", n, took.Round(time.Millisecond))
	}
	if took < 300*time.Millisecond {
		t.Errorf("the latest position came after %v: the budget did not hold it back", took)
	}
}
