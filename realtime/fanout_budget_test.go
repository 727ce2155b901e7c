package realtime

import (
	"context"
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
		{"no connections cost nothing", 10, []step{{0, 0, true}, {0, 5, true}, {0, 0, true}}},
		{"burst is half a second", 10, []step{{0, 3, true}, {0, 3, false}, {0, 2, true}, {0, 1, false}}},
		{"refills at the rate", 10, []step{{0, 5, true}, {100 * time.Millisecond, 2, false}, {200 * time.Millisecond, 2, true}}},
		{"a huge room costs at most the burst", 10, []step{{0, 10_000, true}, {0, 1, false}, {500 * time.Millisecond, 10_000, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newFanoutBudget(tt.perSecond)
			b.allow(t0, 0) // the limiter starts full at its first use
			for i, s := range tt.steps {
				if got := b.allow(t0.Add(s.after), s.conns); got != s.want {
					t.Fatalf("step %d (%v, %d conns): allow = %v, want %v", i, s.after, s.conns, got, s.want)
				}
			}
		})
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
