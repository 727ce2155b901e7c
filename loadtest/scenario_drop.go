package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// maxBuyAttempts bounds how many holds or checkouts one fan tries.
const maxBuyAttempts = 10

// runDrop runs this process's share of the drop: fans join at the join
// rate, wait to be admitted, pick seats from their live map, hold, pay or
// abandon, and leave. A probe fan measures seat-change → delivered to every
// listening fan. It returns when ctx is done or every fan is finished.
func runDrop(ctx context.Context, e *env) {
	var wg sync.WaitGroup
	wg.Go(func() { runProbe(ctx, e, nil) })
	spawn(ctx, e.share.fans, e.share.joinRate, func(i int) {
		wg.Go(func() { dropFan(ctx, e, i) })
	})
	waitOrDone(ctx, &wg)
}

// spawn calls start(i) for i = 0..n-1 at rate per second, evenly, until
// ctx is done.
func spawn(ctx context.Context, n int, rate float64, start func(i int)) {
	t0 := time.Now()
	tick := time.NewTicker(max(time.Millisecond, time.Duration(float64(time.Second)/rate)))
	defer tick.Stop()
	for i := 0; i < n; {
		due := min(n, int(time.Since(t0).Seconds()*rate)+1)
		for ; i < due; i++ {
			start(i)
		}
		if i >= n {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// waitOrDone waits for wg, or for ctx to end and then wg at most 15 s more
// (fans see ctx and return promptly; this only bounds the wait).
func waitOrDone(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
	}
}

// dropFan is one fan of the drop. i is its index in this process; it uses
// the server of its global index (round-robin over --url). A fan who paid,
// abandoned or gave up leaves (closes its socket); a fan who saw the event
// sold out or was still buying when the run ended stays on the page: its
// socket stays open for the map check.
func dropFan(ctx context.Context, e *env, i int) {
	st := e.st
	st.fans.Add(1)
	s := newSession(e, true, true)
	s.f.srv = e.fanServer(e.share.fanBase + i)
	st.fanOn(s.f.srv)
	if err := s.join(ctx); err != nil {
		st.fail(errCode(ctx, err))
		return
	}
	bctx, cancel := context.WithCancel(ctx) // buying: ends with the run or the socket
	defer cancel()
	if !e.openSocket(ctx, s, cancel) {
		return
	}
	if s.waitReady(bctx) && buy(bctx, e, s, e.rng(uint64(i)+1), i) {
		e.watch(s)
		return
	}
	s.stop()
}

// think waits a random time up to --think, like a person reading the map.
func think(ctx context.Context, e *env, rng *rand.Rand) bool {
	if e.cfg.Think <= 0 {
		return ctx.Err() == nil
	}
	return sleep(ctx, time.Duration(rng.Int64N(int64(e.cfg.Think))))
}

// buy is what an admitted drop fan does: pick, hold, pay (or abandon). It
// reports whether the fan stays on the page: true when it saw the event sold
// out or the run (ctx) ended first, false when it paid, abandoned or gave up.
func buy(ctx context.Context, e *env, s *session, rng *rand.Rand, i int) bool {
	cfg := e.cfg
	for attempt := 0; attempt < maxBuyAttempts && ctx.Err() == nil; {
		if !think(ctx, e, rng) {
			return true
		}
		n := cfg.HoldMin + rng.IntN(cfg.HoldMax-cfg.HoldMin+1)
		idx := s.m.pick(e.v, n, rng)
		if idx == nil {
			if _, sold := s.m.counts(); sold == len(e.v.ids) {
				return true // sold out, as far as this fan can see
			}
			// Nothing free now: wait for the map to change (a release or
			// an expiry), bounded by the run.
			select {
			case <-s.m.changed:
			case <-ctx.Done():
				return true
			}
			continue
		}
		attempt++
		seats := e.v.names(idx)
		if ok, err := holdSeats(ctx, e, &s.f, seats, s.m, 2); !ok {
			if err != nil && (errCode(ctx, err) == "seat_unavailable" || retryable(err)) {
				continue
			}
			return ctx.Err() != nil // not_admitted, seat_limit, ...: this fan cannot go on
		}
		if !think(ctx, e, rng) {
			return true
		}
		if rng.Float64() < cfg.Abandon {
			for _, seat := range seats {
				releaseSeat(ctx, e, &s.f, seat)
			}
			return false
		}
		switch res, _ := pay(ctx, e, &s.f, rng, fmt.Sprintf("fan%d-%d@loadtest.example", e.share.index, i)); res {
		case paid:
			return false
		case payHoldLost:
			continue // pick again
		default:
			return ctx.Err() != nil
		}
	}
	return ctx.Err() != nil
}

// holdSeats sends one hold and records it, retrying up to retries times
// what may be retried. Seats the server says are taken are marked held in m
// (if not nil). It reports success, or the error of the failure (nil and ""
// if the run ended).
func holdSeats(ctx context.Context, e *env, f *fan, seats []string, m *seatMap, retries int) (bool, error) {
	st := e.st
	for try := 0; ; try++ {
		t0 := time.Now()
		st.opStart(t0)
		_, err := e.cl.hold(ctx, f, seats)
		t1 := time.Now()
		if answered(err) {
			st.hold.record(t1.Sub(t0))
			st.opEnd(t1)
		}
		if err == nil {
			st.holdsOK.Add(1)
			return true, nil
		}
		if code := errCode(ctx, err); code == "seat_unavailable" {
			st.holdsConflict.Add(1)
			if m != nil {
				if ae := asAPIError(err); ae != nil {
					var taken []int32
					for _, id := range ae.Seats {
						if k := e.v.seat([]byte(id)); k >= 0 {
							taken = append(taken, k)
						}
					}
					m.markTaken(taken)
				}
			}
			return false, err
		} else if code == "" {
			return false, nil
		} else {
			st.fail(code)
			if !retryable(err) || try >= retries || !sleep(ctx, backoff(err, try)) {
				return false, err
			}
		}
	}
}

// releaseSeat releases one held seat (DELETE holds/{seat}).
func releaseSeat(ctx context.Context, e *env, f *fan, seat string) bool {
	err := e.cl.release(ctx, f, seat)
	if err != nil {
		e.st.fail(errCode(ctx, err))
		return false
	}
	e.st.releases.Add(1)
	return true
}

type payResult int

const (
	paid payResult = iota
	payHoldLost
	payFailed
)

// pay checks out everything the fan holds. With probability --decline the
// first card is the declining one; the fan then pays again with a good
// card (new Idempotency-Key: the body changed). Network failures and 5xx
// are retried with the same key, which must not charge twice. It returns
// the outcome and, when paid, how many seats the order has.
func pay(ctx context.Context, e *env, f *fan, rng *rand.Rand, email string) (payResult, int) {
	st := e.st
	card := cardApprove
	if rng.Float64() < e.cfg.Decline {
		card = cardDecline
	}
	key := idemKey(rng)
	for try := 0; try < 6 && ctx.Err() == nil; try++ {
		t0 := time.Now()
		st.opStart(t0)
		o, err := e.cl.checkout(ctx, f, key, card, email)
		t1 := time.Now()
		if answered(err) {
			st.checkout.record(t1.Sub(t0))
			st.opEnd(t1)
		}
		if err == nil {
			st.orders.Add(1)
			st.seatsSold.Add(int64(st.ledger.add(o.OrderID, o.Seats, t1.UnixNano())))
			return paid, len(o.Seats)
		}
		switch code := errCode(ctx, err); {
		case code == "":
			return payFailed, 0
		case code == "payment_declined":
			st.declined.Add(1)
			card, key = cardApprove, idemKey(rng)
		case code == "hold_lost":
			st.fail(code)
			return payHoldLost, 0
		case retryable(err):
			st.fail(code)
			if !sleep(ctx, backoff(err, try)) {
				return payFailed, 0
			}
		default:
			st.fail(code)
			return payFailed, 0
		}
	}
	return payFailed, 0
}

// answered reports whether the server answered (success or an HTTP error),
// as opposed to a network failure or the run ending.
func answered(err error) bool {
	if err == nil {
		return true
	}
	ae := asAPIError(err)
	return ae != nil && ae.Status != 0
}

func asAPIError(err error) *apiError {
	ae, _ := err.(*apiError)
	return ae
}

// idemKey returns a fresh Idempotency-Key.
func idemKey(rng *rand.Rand) string {
	return fmt.Sprintf("lt-%016x%016x", rng.Uint64(), rng.Uint64())
}
