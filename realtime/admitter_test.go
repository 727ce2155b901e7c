package realtime

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// mustAdmissionTimes returns when each fan's admission was granted (its
// until minus AdmitTTL), in the fans' order; every fan must be admitted.
func mustAdmissionTimes(t *testing.T, in *wrInstance, eventID string, fans []string) []time.Time {
	t.Helper()
	k := queueKeysFor(eventID)
	names := make([]string, len(fans))
	for i, f := range fans {
		names[i] = k.admitPrefix + f
	}
	v, err := in.rdb.MGet(context.Background(), names...).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]time.Time, len(fans))
	for i, x := range v {
		s, _ := x.(string)
		u, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("fan %s not admitted (%v)", fans[i], x)
		}
		out[i] = time.UnixMilli(u).Add(-in.cfg.AdmitTTL)
	}
	return out
}

// mustJoinMany joins n fans round-robin over insts, checking each gets the
// next place, and returns them in join order.
func mustJoinMany(t *testing.T, insts []*wrInstance, eventID string, n int) []string {
	t.Helper()
	fans := make([]string, n)
	for i := range fans {
		fans[i] = fmt.Sprintf("fan-%03d", i)
		st := mustJoin(t, insts[i%len(insts)].WaitingRoom, eventID, fans[i])
		if st.State != StateWaiting || st.Position != i+1 {
			t.Fatalf("join %d: %+v, want waiting at %d", i, st, i+1)
		}
	}
	return fans
}

func checkInOrder(t *testing.T, at []time.Time) {
	t.Helper()
	for i := 1; i < len(at); i++ {
		if at[i].Before(at[i-1]) {
			t.Errorf("fan %d admitted at %v, before fan %d at %v", i, at[i], i-1, at[i-1])
		}
	}
}

func TestAdmissionIsFirstComeFirstServedAtTheRate(t *testing.T) {
	t.Parallel()
	svc := mustWRService(t)
	ev := mustWREvent(t, svc, time.Now().Add(-time.Hour))
	cfg := fastWRConfig() // 100/s, 20ms ticks
	insts := mustStartWRInstances(t, svc, 3, cfg, nil)
	mustSetAdmission(t, insts[0].WaitingRoom, ev.ID, nil, ptrTo(true))
	const n = 200
	fans := mustJoinMany(t, insts, ev.ID, n)

	mustSetAdmission(t, insts[1].WaitingRoom, ev.ID, nil, ptrTo(false))
	// The instances count admissions when their step's reply arrives, just
	// after Redis counts them: wait for both.
	hooked := func() (total int64) {
		for _, in := range insts {
			total += in.admitted.Load()
		}
		return total
	}
	waitUntil(t, 15*time.Second, "everyone admitted", func() bool {
		qs, err := insts[2].QueueStats(context.Background(), ev.ID)
		return err == nil && qs.Admitted == n && hooked() >= n
	})

	at := mustAdmissionTimes(t, insts[0], ev.ID, fans)
	checkInOrder(t, at)
	if total := hooked(); total != n {
		t.Errorf("instances admitted %d in all, want %d (each fan once)", total, n)
	}
	// Rate: fans after the first step over the time from first to last step.
	firstStep := 0
	perStep := map[time.Time]int{}
	for _, a := range at {
		if a.Equal(at[0]) {
			firstStep++
		}
		perStep[a]++
	}
	span := at[n-1].Sub(at[0])
	rate := float64(n-firstStep) / span.Seconds()
	t.Logf("admitted %d in %v over %d steps: %.1f/s", n, span, len(perStep), rate)
	if rate < 80 || rate > 120 {
		t.Errorf("cluster-wide rate %.1f/s, want 100 ±20%%", rate)
	}
	// Smooth, not one burst a second: many steps, hardly any admitting more
	// than 250 ms worth at 100/s (a step delayed by a busy machine makes up
	// for its delay, up to the credit cap), none over the cap.
	capN := int(100*creditCap(cfg.Tick).Seconds()) + 1
	big := 0
	for step, k := range perStep {
		if k > capN {
			t.Errorf("%d fans admitted in one step at %v: over the credit cap (%d)", k, step, capN)
		}
		if k > 26 {
			big++
		}
	}
	if big > len(perStep)/10 {
		t.Errorf("%d of %d steps admitted more than 26 fans: bursts, want smooth admission", big, len(perStep))
	}
	if len(perStep) < 20 {
		t.Errorf("admitted in %d steps, want admission spread over many ticks", len(perStep))
	}
	qs, err := insts[0].QueueStats(context.Background(), ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if qs.QueueLength != 0 || qs.AdmitRate <= 0 {
		t.Errorf("stats after the drain = %+v, want an empty line and a measured rate", qs)
	}
}

func TestAdmitterTakeover(t *testing.T) {
	t.Parallel()
	svc := mustWRService(t)
	ev := mustWREvent(t, svc, time.Now().Add(-time.Hour))
	cfg := fastWRConfig()
	cfg.AdmitRate = 50
	insts := make([]*wrInstance, 3)
	for i := range insts {
		insts[i] = newWRInstance(t, svc, cfg, nil)
		insts[i].keepLeaseOnStop = true // a stopped instance leaves its lease, as a crash would
		insts[i].start(t)
	}
	mustSetAdmission(t, insts[0].WaitingRoom, ev.ID, nil, ptrTo(true))
	const n = 150
	fans := mustJoinMany(t, insts, ev.ID, n)
	mustSetAdmission(t, insts[0].WaitingRoom, ev.ID, nil, ptrTo(false))

	ctx := context.Background()
	waitUntil(t, 10*time.Second, "30 admitted", func() bool {
		qs, err := insts[0].QueueStats(ctx, ev.ID)
		return err == nil && qs.Admitted >= 30
	})
	holder, err := insts[0].rdb.Get(ctx, queueKeysFor(ev.ID).lease).Result()
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	var dead *wrInstance
	var alive []*wrInstance
	for _, in := range insts {
		if in.token == holder {
			dead = in
		} else {
			alive = append(alive, in)
		}
	}
	if dead == nil {
		t.Fatalf("lease held by %q, none of the instances", holder)
	}
	dead.stop()
	killedAt := time.Now()

	waitUntil(t, 15*time.Second, "everyone admitted", func() bool {
		qs, err := alive[0].QueueStats(ctx, ev.ID)
		return err == nil && qs.Admitted == n
	})
	at := mustAdmissionTimes(t, alive[0], ev.ID, fans)
	checkInOrder(t, at)
	var gap time.Duration
	for i := 1; i < n; i++ {
		gap = max(gap, at[i].Sub(at[i-1]))
	}
	t.Logf("longest pause in admission: %v (holder stopped at %v)", gap, killedAt.Format("15:04:05.000"))
	if gap > 2*time.Second {
		t.Errorf("admission stopped for %v after the lease holder died, want at most 2s", gap)
	}
	if alive[0].admitted.Load()+alive[1].admitted.Load() == 0 {
		t.Error("no surviving wrInstance admitted anyone")
	}
}

func TestSetAdmissionAppliesOnEveryInstance(t *testing.T) {
	t.Parallel()
	svc := mustWRService(t)
	ev := mustWREvent(t, svc, time.Now().Add(-time.Hour))
	ctx := context.Background()
	cfg := fastWRConfig()
	cfg.AdmitRate = 10

	// Steps of the admitting instance, recorded as they happen.
	var mu sync.Mutex
	type step struct {
		at time.Time
		n  int
	}
	var steps []step
	insts := make([]*wrInstance, 2)
	for i := range insts {
		insts[i] = newWRInstance(t, svc, cfg, nil)
		insts[i].Hooks.Admitted = func(n int) {
			mu.Lock()
			steps = append(steps, step{time.Now(), n})
			mu.Unlock()
		}
	}
	mustSetAdmission(t, insts[0].WaitingRoom, ev.ID, nil, ptrTo(true))
	mustJoinMany(t, insts, ev.ID, 300)
	for _, in := range insts {
		in.start(t)
	}
	waitUntil(t, 5*time.Second, "a lease holder", func() bool {
		return insts[0].rdb.Exists(ctx, queueKeysFor(ev.ID).lease).Val() == 1
	})
	holder := insts[0].rdb.Get(ctx, queueKeysFor(ev.ID).lease).Val()
	other := insts[0]
	if other.token == holder {
		other = insts[1]
	}
	firstAfter := func(since time.Time, atLeast int) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range steps {
			if s.at.After(since) && s.n >= atLeast {
				return s.at, true
			}
		}
		return time.Time{}, false
	}

	t.Run("resume applies within 2s", func(t *testing.T) {
		t0 := time.Now()
		mustSetAdmission(t, other.WaitingRoom, ev.ID, nil, ptrTo(false))
		var got time.Time
		waitUntil(t, 3*time.Second, "an admission", func() bool { at, ok := firstAfter(t0, 1); got = at; return ok })
		if d := got.Sub(t0); d > 2*time.Second {
			t.Errorf("first admission %v after resuming", d)
		}
	})
	t.Run("a higher rate applies within 2s", func(t *testing.T) {
		t0 := time.Now()
		s := mustSetAdmission(t, other.WaitingRoom, ev.ID, ptrTo(400), nil)
		if s != (AdmissionSettings{Rate: 400}) {
			t.Fatalf("settings = %+v", s)
		}
		var got time.Time
		// 400/s at 20ms ticks is 8 a step; at 10/s no step admits more than 1.
		waitUntil(t, 3*time.Second, "a step at the new rate", func() bool { at, ok := firstAfter(t0, 6); got = at; return ok })
		if d := got.Sub(t0); d > 2*time.Second {
			t.Errorf("new rate applied %v after the change", d)
		}
	})
	t.Run("pause applies within 2s", func(t *testing.T) {
		mustSetAdmission(t, other.WaitingRoom, ev.ID, ptrTo(10), nil)
		t0 := time.Now()
		mustSetAdmission(t, other.WaitingRoom, ev.ID, nil, ptrTo(true))
		before, err := other.QueueStats(ctx, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		holderIn := insts[0]
		if holderIn.token != holder {
			holderIn = insts[1]
		}
		ticks := holderIn.ticks.Load()
		waitUntil(t, 5*time.Second, "25 more ticks", func() bool { return holderIn.ticks.Load() >= ticks+25 })
		if at, ok := firstAfter(t0.Add(200*time.Millisecond), 1); ok {
			t.Errorf("admitted at %v, %v after pausing", at, at.Sub(t0))
		}
		after, err := holderIn.QueueStats(ctx, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if after.Admitted != before.Admitted || !after.Settings.Paused {
			t.Errorf("after pausing: %+v, before: %+v", after, before)
		}
		if s, err := holderIn.AdmissionSettings(ctx, ev.ID); err != nil || s != (AdmissionSettings{Rate: 10, Paused: true}) {
			t.Errorf("settings on the other wrInstance = %+v, %v", s, err)
		}
	})
}
