package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// runHolds runs this process's closed-loop hold workers: each fan holds
// seats from its own slice of the venue and releases them, again and again.
//
// Before the loop starts, every worker gets the fans it will need at
// --fan-rate (with --rate; else warmPoolFans), admitted in parallel, so the
// measured window is not spent in the waiting room.
func runHolds(ctx context.Context, e *env) {
	every := pacing(e.share.rate, e.share.workers)
	perWorker := warmPoolFans
	if every > 0 {
		perWorker = int(math.Ceil(float64(time.Second)/float64(every)/e.cfg.FanRate)) + 1
	}
	pools := make([]*fanPool, e.share.workers)
	sem := make(chan struct{}, warmParallel)
	var warm sync.WaitGroup
	for w := range pools {
		pools[w] = &fanPool{every: time.Duration(float64(time.Second) / e.cfg.FanRate)}
		fans := make([]*pooledFan, perWorker)
		pools[w].fans = fans
		for k := range fans {
			warm.Go(func() {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				defer func() { <-sem }()
				if lf, err := admitFan(ctx, e); err == nil {
					fans[k] = &pooledFan{lf: lf}
				} else {
					e.st.fail(errCode(ctx, err))
				}
			})
		}
	}
	warm.Wait()
	var wg sync.WaitGroup
	for w := range pools {
		pools[w].fans = slices.DeleteFunc(pools[w].fans, func(f *pooledFan) bool { return f == nil })
		g := e.share.workerBase + w
		seats := partition(0, len(e.v.ids), g, e.share.workersAll)
		wg.Go(func() { holdsWorker(ctx, e, seats, pools[w], newPacer(every), uint64(g)+1) })
	}
	waitOrDone(ctx, &wg)
}

// Warm-up of the holds workers' fan pools.
const (
	warmPoolFans = 8  // per worker in a closed loop; more join as needed
	warmParallel = 64 // admissions in flight at once
)

// runCheckout runs this process's closed-loop checkout workers: each holds
// fresh seats from its own slice of the venue and buys them, until its
// slice is sold or the run ends.
func runCheckout(ctx context.Context, e *env) {
	var wg sync.WaitGroup
	every := pacing(e.share.rate, e.share.workers)
	for w := 0; w < e.share.workers; w++ {
		g := e.share.workerBase + w
		seats := partition(0, len(e.v.ids), g, e.share.workersAll)
		wg.Go(func() { checkoutWorker(ctx, e, seats, newPacer(every), uint64(g)+1) })
	}
	waitOrDone(ctx, &wg)
}

// pacing returns the time between two attempts of one worker for a total
// rate shared by workers (0: no pacing).
func pacing(rate float64, workers int) time.Duration {
	if rate <= 0 || workers <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) * float64(workers) / rate)
}

// pacer spaces a worker's attempts at a fixed rate. A worker that fell
// behind catches up (attempts back to back) for at most maxCatchUp of
// backlog, so the average rate holds without unbounded bursts.
type pacer struct {
	every time.Duration
	next  time.Time
}

// maxCatchUp bounds a pacer's backlog.
const maxCatchUp = time.Second

func newPacer(every time.Duration) *pacer { return &pacer{every: every} }

// wait blocks until the next attempt is due; false when ctx ended.
func (p *pacer) wait(ctx context.Context) bool {
	if p.every <= 0 {
		return ctx.Err() == nil
	}
	now := time.Now()
	if p.next.IsZero() || now.Sub(p.next) > maxCatchUp {
		p.next = now
	}
	d := p.next.Sub(now)
	p.next = p.next.Add(p.every)
	return sleep(ctx, d)
}

// maxLoopFailures stops a worker after this many failures in a row.
const maxLoopFailures = 20

// loopFan is a closed-loop worker's current fan.
type loopFan struct {
	f      fan
	bought int
}

// admitFan makes a new fan on the next server of the process's round-robin:
// it joins the waiting room and polls its place until admitted. The wait counts in join_to_admitted.
func admitFan(ctx context.Context, e *env) (*loopFan, error) {
	st := e.st
	st.fans.Add(1)
	lf := &loopFan{f: fan{srv: e.anyServer()}}
	st.fanOn(lf.f.srv)
	t0 := time.Now()
	var q queueStatus
	var err error
	for try := 0; try < maxJoinTries; try++ {
		if q, err = e.cl.join(ctx, &lf.f); err == nil || !retryable(err) || !sleep(ctx, backoff(err, try)) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	for polls := 0; q.State != "admitted"; polls++ {
		if q.State != "waiting" {
			return nil, &apiError{Code: "queue_state", Message: fmt.Sprintf("queue state %q after joining", q.State)}
		}
		if !sleep(ctx, queuePollEvery) {
			return nil, ctx.Err()
		}
		if q, err = e.cl.queue(ctx, &lf.f); err != nil {
			if !retryable(err) {
				return nil, err
			}
			st.fail(errCode(ctx, err))
			q.State = "waiting"
		}
	}
	now := time.Now()
	st.admit(now)
	st.joinToAdmitted.record(now.Sub(t0))
	return lf, nil
}

// renew tells whether a worker must replace its fan after err.
func renew(err error) bool {
	ae := asAPIError(err)
	return ae != nil && (ae.Code == "not_admitted" || ae.Code == "seat_limit")
}

// maxPoolFans bounds the fans one holds worker rotates over.
const maxPoolFans = 256

// fanPool is a holds worker's fans: each sends at most --fan-rate holds per
// second (the server limits requests per session), so a fast worker needs
// several. New fans are admitted in the background (ahead) and join the
// pool when every fan is busy. Not safe for concurrent use: one per worker.
type fanPool struct {
	every time.Duration
	ahead <-chan *loopFan
	fans  []*pooledFan
}

type pooledFan struct {
	lf   *loopFan
	next time.Time // when this fan may send again
}

// get returns a fan that may send now: the one free soonest, or a newly
// admitted one if that comes first (while the pool is not full).
func (p *fanPool) get(ctx context.Context) (*pooledFan, error) {
	var best *pooledFan
	for _, f := range p.fans {
		if best == nil || f.next.Before(best.next) {
			best = f
		}
	}
	if best == nil || (best.next.After(time.Now()) && len(p.fans) < maxPoolFans) {
		var timer <-chan time.Time
		if best != nil {
			t := time.NewTimer(time.Until(best.next))
			defer t.Stop()
			timer = t.C
		}
		select {
		case lf, ok := <-p.ahead:
			if ok {
				best = &pooledFan{lf: lf}
				p.fans = append(p.fans, best)
			} else if best == nil {
				return nil, errors.New("no fan could be admitted")
			} else {
				p.ahead = nil // no more fans: go on with the pool
			}
		case <-timer:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !sleep(ctx, time.Until(best.next)) {
		return nil, ctx.Err()
	}
	best.next = time.Now().Add(p.every)
	return best, nil
}

// drop removes a fan that can no longer hold.
func (p *fanPool) drop(f *pooledFan) {
	for i, g := range p.fans {
		if g == f {
			p.fans = append(p.fans[:i], p.fans[i+1:]...)
			return
		}
	}
}

// holdsWorker holds n seats of its slice at a time and releases them,
// rotating over the fans of its pool.
func holdsWorker(ctx context.Context, e *env, seats []int32, pool *fanPool, p *pacer, actor uint64) {
	if len(seats) == 0 {
		return
	}
	cfg, rng := e.cfg, e.rng(actor)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pool.ahead = admitAhead(ctx, e)
	pos := 0
	for failures := 0; failures < maxLoopFailures && p.wait(ctx); {
		pf, err := pool.get(ctx)
		if err != nil {
			return // the run ended, or admissions failed (counted by admitAhead)
		}
		n := min(cfg.HoldMin+rng.IntN(cfg.HoldMax-cfg.HoldMin+1), len(seats))
		names := make([]string, n)
		for k := range names {
			names[k] = e.v.ids[seats[pos]]
			pos = (pos + 1) % len(seats)
		}
		ok, err := holdSeats(ctx, e, &pf.lf.f, names, nil, 0)
		switch {
		case ok:
			failures = 0
			for _, name := range names {
				releaseSeat(ctx, e, &pf.lf.f, name)
			}
		case err == nil:
			return // the run ended
		case errCode(ctx, err) == "seat_unavailable":
		case errCode(ctx, err) == "rate_limited":
			pf.next = time.Now().Add(max(backoff(err, 0), pool.every))
		case renew(err):
			failures++
			pool.drop(pf)
		default:
			failures++
			sleep(ctx, backoff(err, failures))
		}
	}
}

// checkoutWorker buys its slice of seats, n at a time: hold, then pay
// (--decline of the payments with the declining card first). A fan buys at
// most --max-seats-per-fan seats; the next fan joins the waiting room while
// the current one buys, so admission does not stall the loop.
func checkoutWorker(ctx context.Context, e *env, seats []int32, p *pacer, actor uint64) {
	if len(seats) == 0 {
		return
	}
	cfg, rng := e.cfg, e.rng(actor)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := admitAhead(ctx, e)
	var lf *loopFan
	email := fmt.Sprintf("worker%d-%d@loadtest.example", e.share.index, actor)
	for pos, failures := 0, 0; pos < len(seats) && failures < maxLoopFailures && p.wait(ctx); {
		n := min(cfg.HoldMin+rng.IntN(cfg.HoldMax-cfg.HoldMin+1), len(seats)-pos)
		if lf == nil || lf.bought+n > cfg.MaxPerFan {
			var ok bool
			if lf, ok = <-next; !ok {
				return // the run ended or fans cannot be admitted
			}
		}
		names := e.v.names(seats[pos : pos+n])
		pos += n
		ok, err := holdSeats(ctx, e, &lf.f, names, nil, 2)
		if !ok {
			if err == nil {
				return
			}
			if errCode(ctx, err) != "seat_unavailable" {
				failures++
			}
			if renew(err) {
				lf = nil
			}
			continue
		}
		switch res, k := pay(ctx, e, &lf.f, rng, email); res {
		case paid:
			failures = 0
			lf.bought += k
		case payHoldLost:
			failures++
		default:
			if ctx.Err() != nil {
				return
			}
			failures++
			lf = nil // its holds are left to expire; a new fan goes on
		}
	}
}

// admitAhead admits fans one ahead of need: the channel holds the next
// admitted fan. It closes when ctx ends or admissions fail too often.
func admitAhead(ctx context.Context, e *env) <-chan *loopFan {
	ch := make(chan *loopFan)
	go func() {
		defer close(ch)
		for failures := 0; failures < maxLoopFailures; {
			lf, err := admitFan(ctx, e)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				e.st.fail(errCode(ctx, err))
				failures++
				sleep(ctx, backoff(err, failures))
				continue
			}
			failures = 0
			select {
			case ch <- lf:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}
