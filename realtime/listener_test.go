package realtime

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestFeed_ExpiryReachesOtherInstance: a hold with a 2 s TTL turns held and
// then available on a socket of another instance within 3 s, with no request
// from anyone — Redis's own expiry notification drives it.
func TestFeed_ExpiryReachesOtherInstance(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 1, 10)
	opts := Options{HoldTTL: 2 * time.Second} // production defaults otherwise (100ms batches)
	e.newInstance(t, "a", opts, nil)
	b := e.newInstance(t, "b", opts, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialSnapshot(t, ctx, b.wsURL("watcher"), "watcher")
	seat := e.cat.Order[3]
	start := time.Now()
	e.mustHold(t, seat, "holder", 2*time.Second)
	if err := c.waitFor(ctx, "held", func(c *fanClient) bool { return c.states[seat] == "held" }); err != nil {
		t.Fatal(err)
	}
	held := time.Since(start)
	if err := c.waitFor(ctx, "available", func(c *fanClient) bool { return c.states[seat] == "available" }); err != nil {
		t.Fatal(err)
	}
	freed := time.Since(start)
	t.Logf("held after %v, available after %v", held, freed)
	if held > 500*time.Millisecond {
		t.Errorf("the hold took %v to show", held)
	}
	if freed > 3*time.Second || freed < 2*time.Second {
		t.Errorf("the 2 s hold turned available after %v, want within 2–3 s", freed)
	}
}

// TestFeed_SnapshotFromRedisAndSQL: a socket connecting to an event with
// existing holds and sales gets them in its first snapshot: sold from SQL
// alone (nothing in Redis says so), held from Redis, its own holds as mine.
func TestFeed_SnapshotFromRedisAndSQL(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 2, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e.mustSell(t, "buyer", []string{e.cat.Order[0], e.cat.Order[1]}, false)
	e.rdb.Del(ctx, "sold:{"+e.eventID+"}", "stream:{"+e.eventID+"}") // SQL is the truth
	e.mustHold(t, e.cat.Order[2], "me", time.Minute)
	e.mustHold(t, e.cat.Order[3], "other", time.Minute)
	in := e.newInstance(t, "a", fastHubOpts(), nil)
	c := dialSnapshot(t, ctx, in.wsURL("me"), "me")
	c.mu.Lock()
	defer c.mu.Unlock()
	want := map[string]string{}
	for _, s := range e.cat.Order {
		want[s] = "available"
	}
	want[e.cat.Order[0]], want[e.cat.Order[1]] = "sold", "sold"
	want[e.cat.Order[2]], want[e.cat.Order[3]] = "held", "held"
	if d := c.diff(want, map[string]string{e.cat.Order[2]: "me", e.cat.Order[3]: "other"}); d != "" {
		t.Error(d)
	}
}

// TestFeed_SalesFromStream: a sale announced only by the outbox stream
// (twice, as an at-least-once relay may) turns seats sold; a sold seat stays
// sold whatever happens to its hold key afterwards.
func TestFeed_SalesFromStream(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 2, 5)
	in := e.newInstance(t, "a", fastHubOpts(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialSnapshot(t, ctx, in.wsURL("me"), "me")
	s1, s2 := e.cat.Order[0], e.cat.Order[1]
	e.mustHold(t, s1, "me", time.Minute)
	if err := c.waitFor(ctx, "mine", func(c *fanClient) bool { return c.mine[s1] }); err != nil {
		t.Fatal(err)
	}
	e.mustSell(t, "me", []string{s1, s2}, true)
	if err := c.waitFor(ctx, "sold", func(c *fanClient) bool { return c.states[s1] == "sold" && c.states[s2] == "sold" && !c.mine[s1] }); err != nil {
		t.Fatal(err)
	}
	// A stray hold key on a sold seat (it cannot happen through booking)
	// does not bring it back.
	e.mustHold(t, s2, "me", time.Minute)
	e.mustHold(t, e.cat.Order[2], "me", time.Minute) // a later change to wait for
	if err := c.waitFor(ctx, "later hold", func(c *fanClient) bool { return c.mine[e.cat.Order[2]] }); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.states[s2] != "sold" || c.mine[s2] {
		t.Errorf("sold seat %s shows %s (mine %v)", s2, c.states[s2], c.mine[s2])
	}
	if c.snapshots != 1 || c.seqErr != nil {
		t.Errorf("snapshots %d, seq error %v", c.snapshots, c.seqErr)
	}
}

// TestHub_FeedLingersThenStops: the upstream subscription starts with the
// first socket of an event, outlives the last one by Linger, then stops.
func TestHub_FeedLingersThenStops(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 1, 3)
	in := e.newInstance(t, "a", fastHubOpts(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if got := in.hub.activeEvents(); len(got) != 0 {
		t.Fatalf("feeds before any socket: %v", got)
	}
	c1 := dialFan(t, ctx, in.wsURL("a"), "a")
	c2 := dialFan(t, ctx, in.wsURL("b"), "b")
	for _, c := range []*fanClient{c1, c2} {
		if err := c.waitFor(ctx, "snapshot", func(c *fanClient) bool { return c.snapshots > 0 }); err != nil {
			t.Fatal(err)
		}
	}
	if got := in.hub.activeEvents(); !slices.Equal(got, []string{e.eventID}) {
		t.Fatalf("feeds = %v, want one for %s", got, e.eventID)
	}
	if in.resyncs.Load() != 1 {
		t.Errorf("two sockets of one event made %d rebuilds, want 1 (one subscription)", in.resyncs.Load())
	}
	left := time.Now() // the hub sees the sockets go after this
	c1.ws.Close(1000, "")
	c2.ws.Close(1000, "")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(in.hub.activeEvents()) > 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the feed never stopped")
		case <-tick.C:
		}
	}
	if d := time.Since(left); d < 200*time.Millisecond {
		t.Errorf("the feed stopped %v after the last socket left, before the linger", d)
	}
}

// TestHub_ResyncSendsSnapshots: Hub.Resync rebuilds the event's map and
// sends every socket a fresh snapshot, seq still rising by one.
func TestHub_ResyncSendsSnapshots(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 1, 5)
	in := e.newInstance(t, "a", fastHubOpts(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialSnapshot(t, ctx, in.wsURL("me"), "me")
	in.hub.Resync(e.eventID)
	if err := c.waitFor(ctx, "second snapshot", func(c *fanClient) bool { return c.snapshots == 2 }); err != nil {
		t.Fatal(err)
	}
	if got := in.resyncs.Load(); got != 2 {
		t.Errorf("%d rebuilds, want 2", got)
	}
	in.hub.Resync("no-such-event") // no feed: nothing happens
	waitConverged(t, ctx, e, []*fanClient{c})
}
