package loadtest

import (
	"context"
	"sync"
	"time"
)

// runIdle runs this process's share of the idle scenario: fans join at the
// join rate, are admitted and then only listen, while the probe fan and the
// background buyers change seats. The probe starts once every fan of the
// process is admitted (or two thirds of the run have passed), so that
// change_to_delivered is the fan-out to the whole crowd, not a measure of
// the server while it accepts connections.
func runIdle(ctx context.Context, e *env) {
	var wg sync.WaitGroup
	settleBy := time.Now().Add(e.cfg.Duration * 2 / 3)
	if dl, ok := ctx.Deadline(); ok {
		settleBy = time.Now().Add(time.Until(dl) * 2 / 3)
	}
	settled := func() bool { return e.st.admitted.Load() >= int64(e.share.fans) || time.Now().After(settleBy) }
	wg.Go(func() { runProbe(ctx, e, settled) })
	n := len(e.v.ids)
	for b := 0; b < e.share.buyers; b++ {
		// Buyers take the second half of the venue; the probe picks any
		// free seat and gives it back.
		seats := partition(n/2, n, b, e.share.buyers)
		wg.Go(func() {
			checkoutWorker(ctx, e, seats, newPacer(time.Second), uint64(1<<30+b))
		})
	}
	stride := idleMapStride(e.share.fans, len(e.v.ids))
	spawn(ctx, e.share.fans, e.share.joinRate, func(i int) {
		wg.Go(func() { idleFan(ctx, e, i, i%stride == 0) })
	})
	waitOrDone(ctx, &wg)
}

// idleMapBudget bounds the memory of the live maps idle fans keep for the
// map check, per process: one byte per seat per fan.
const idleMapBudget = 64 << 20

// idleMapStride returns k such that every k-th idle fan keeps a live map:
// all of them while fans × seats fits idleMapBudget.
func idleMapStride(fans, seats int) int {
	if fans <= 0 || seats <= 0 {
		return 1
	}
	return max(1, (fans*seats+idleMapBudget-1)/idleMapBudget)
}

// idleFan joins, is admitted and listens until the run ends. A fan that
// keeps a map (keepMap) stays connected after the run for the map check.
func idleFan(ctx context.Context, e *env, i int, keepMap bool) {
	e.st.fans.Add(1)
	s := newSession(e, keepMap, true)
	s.f.srv = e.fanServer(e.share.fanBase + i)
	e.st.fanOn(s.f.srv)
	if err := s.join(ctx); err != nil {
		e.st.fail(errCode(ctx, err))
		return
	}
	if !keepMap {
		if err := s.run(ctx); err != nil {
			e.st.fail(errCode(ctx, err))
		}
		return
	}
	lctx, cancel := context.WithCancel(ctx) // listening: ends with the run or the socket
	defer cancel()
	if !e.openSocket(ctx, s, cancel) {
		return
	}
	<-lctx.Done()
	if ctx.Err() != nil && s.live.Load() {
		e.watch(s)
		return
	}
	s.stop()
}

// maxProbeFailures stops a probe whose requests keep failing.
const maxProbeFailures = 20

// runProbe is the probe fan: it goes through the waiting room like anyone,
// waits until settled (if not nil) reports true, then every
// --probe-interval holds a free seat from its live map and, one
// interval later, releases it. Each change is registered with the process's
// probe, stamped just before its request is sent, so that every listening
// fan can time its delivery. The probe's own requests are not counted in
// holds_ok or the hold latency.
func runProbe(ctx context.Context, e *env, settled func() bool) {
	if e.pr == nil {
		return
	}
	st := e.st
	s := newSession(e, true, false)
	s.probeFan = true
	s.f.srv = e.share.index % e.servers()
	if err := s.join(ctx); err != nil {
		st.fail(errCode(ctx, err))
		return
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.run(pctx); err != nil {
			st.fail(errCode(ctx, err))
		}
		cancel()
	})
	defer wg.Wait()
	defer s.stop()
	if !s.waitReady(pctx) {
		return
	}
	for settled != nil && !settled() {
		if !sleep(pctx, 100*time.Millisecond) {
			return
		}
	}
	rng := e.rng(1 << 31)
	for failures := 0; failures < maxProbeFailures; {
		if !sleep(pctx, e.cfg.ProbeEvery) {
			return
		}
		idx := s.m.pick(e.v, 1, rng)
		if idx == nil {
			select { // nothing free: wait for a change
			case <-s.m.changed:
			case <-pctx.Done():
				return
			}
			continue
		}
		seat, name := idx[0], e.v.ids[idx[0]]
		id := e.pr.begin(seat, stHeld, time.Now())
		if _, err := e.cl.hold(pctx, &s.f, []string{name}); err != nil {
			e.pr.cancel(id)
			if code := errCode(pctx, err); code == "seat_unavailable" {
				s.m.markTaken(idx)
			} else if code != "" {
				st.fail("probe_" + code)
				failures++
			}
			continue
		}
		if !sleep(pctx, e.cfg.ProbeEvery) {
			// Give the seat back even though the run is over.
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			e.cl.release(rctx, &s.f, name)
			rcancel()
			return
		}
		id = e.pr.begin(seat, stAvailable, time.Now())
		if err := e.cl.release(pctx, &s.f, name); err != nil {
			e.pr.cancel(id)
			if code := errCode(pctx, err); code != "" {
				st.fail("probe_" + code)
				failures++
			}
		}
	}
}

// partition returns the seat indexes in [lo, hi) that belong to worker w of
// n: every n-th seat, so that concurrent workers never compete for a seat.
func partition(lo, hi, w, n int) []int32 {
	if n <= 0 || w < 0 || w >= n || hi <= lo {
		return nil
	}
	out := make([]int32, 0, (hi-lo)/n+1)
	for j := lo + w; j < hi; j += n {
		out = append(out, int32(j))
	}
	return out
}
