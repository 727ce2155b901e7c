//go:build faults

package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Sandbox cards (API.md "Checkout").
const (
	cardApprove = "4242424242424242"
	cardDecline = "4000000000000002"
	cardSlow    = "4000000000000341" // approves after 3 s
)

// maxSeatsPerFan is the server's MAX_SEATS_PER_FAN default.
const maxSeatsPerFan = 6

// buyConfig shapes the buying fans of a scenario.
type buyConfig struct {
	fans            int
	pool            []string      // seats the fans fight over
	maxSeats        int           // seats per attempt: 1..maxSeats
	slowFraction    float64       // share of checkouts with the slow card
	declineFraction float64       // share of checkouts with the declining card
	checkoutTimeout time.Duration // client timeout of one checkout request
	retries         int           // same-key retries of an unknown checkout during the run
	duration        time.Duration // no new attempt starts after this
	think           time.Duration // pause between attempts (jittered)
	startSpread     time.Duration // fans start spread over this
	liveMaps        bool          // every fan keeps a live seat map socket
	toLimit         bool          // keep buying until the server says seat_limit
}

// workload is a scenario's fans and their history.
type workload struct {
	c    *cluster
	ev   *event
	h    *history
	cfg  buyConfig
	fans []*fan

	settleExtra time.Duration // more time for recovery (slow Postgres)
}

func newWorkload(c *cluster, ev *event, h *history, cfg buyConfig) *workload {
	if cfg.maxSeats == 0 {
		cfg.maxSeats = 2
	}
	if cfg.checkoutTimeout == 0 {
		cfg.checkoutTimeout = 20 * time.Second
	}
	if cfg.think == 0 {
		cfg.think = 200 * time.Millisecond
	}
	if cfg.pool == nil {
		cfg.pool = ev.Seats
	}
	w := &workload{c: c, ev: ev, h: h, cfg: cfg}
	for i := 0; i < cfg.fans; i++ {
		w.fans = append(w.fans, newFan(c, ev, h, i))
	}
	return w
}

// run lets every fan buy until cfg.duration has passed (and its current
// attempt ended), then returns.
func (w *workload) run(ctx context.Context) {
	var wg sync.WaitGroup
	stopAt := time.Now().Add(w.cfg.duration)
	for _, f := range w.fans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.buyer(ctx, f, stopAt)
		}()
	}
	wg.Wait()
}

func (w *workload) buyer(ctx context.Context, f *fan, stopAt time.Time) {
	if w.cfg.startSpread > 0 {
		sleepCtx(ctx, time.Duration(f.rng.Int64N(int64(w.cfg.startSpread))))
	}
	if f.admit(ctx) != nil {
		return
	}
	if w.cfg.liveMaps && f.live == nil {
		f.openLiveMap(nil) // after the first request: it carries the fan's session
	}
	for attempt := 0; attempt < 200 && time.Now().Before(stopAt) && ctx.Err() == nil; attempt++ {
		f.mu.Lock()
		bought := f.bought
		f.mu.Unlock()
		if !w.cfg.toLimit && bought+w.cfg.maxSeats > maxSeatsPerFan {
			return
		}
		seats := pickSeats(f.rng, w.available(f), 1+f.rng.IntN(w.cfg.maxSeats))
		if len(seats) == 0 {
			w.pause(ctx, f)
			continue
		}
		ho := f.hold(ctx, seats)
		if ho.Outcome == outcomeFail {
			switch ho.Code {
			case "not_admitted":
				if f.admit(ctx) != nil {
					return
				}
			case "seat_limit":
				if !w.cfg.toLimit {
					return
				}
			}
			w.pause(ctx, f)
			continue
		}
		key, card := f.newKey(), w.card(f)
		o := f.checkout(ctx, key, card, w.cfg.checkoutTimeout, false)
		for r := 0; o.Outcome == outcomeUnknown && r < w.cfg.retries && ctx.Err() == nil; r++ {
			sleepCtx(ctx, time.Duration(300+f.rng.IntN(700))*time.Millisecond)
			o = f.checkout(ctx, key, card, w.cfg.checkoutTimeout, false)
		}
		if o.Outcome == outcomeFail && o.Code == "not_admitted" {
			if f.admit(ctx) != nil {
				return
			}
		}
		w.pause(ctx, f)
	}
}

func (w *workload) pause(ctx context.Context, f *fan) {
	sleepCtx(ctx, w.cfg.think/2+time.Duration(f.rng.Int64N(int64(w.cfg.think))))
}

// available returns the pool's seats the fan's live map shows available
// (the whole pool without a map): fans pick what they see free, and still
// collide with each other.
func (w *workload) available(f *fan) []string {
	if f.live == nil {
		return w.cfg.pool
	}
	seats := f.live.state()
	if len(seats) == 0 {
		return w.cfg.pool
	}
	out := make([]string, 0, len(w.cfg.pool))
	for _, s := range w.cfg.pool {
		if seats[s] == "available" {
			out = append(out, s)
		}
	}
	return out
}

// card picks the card of one checkout.
func (w *workload) card(f *fan) string {
	x := f.rng.Float64()
	switch {
	case x < w.cfg.declineFraction:
		return cardDecline
	case x < w.cfg.declineFraction+w.cfg.slowFraction:
		return cardSlow
	}
	return cardApprove
}

// pickSeats returns n distinct seats of pool, adjacent when possible (fans
// buy together), which makes fans collide.
func pickSeats(rng *lockedRand, pool []string, n int) []string {
	if n > len(pool) {
		n = len(pool)
	}
	if n == 0 {
		return nil
	}
	start := rng.IntN(len(pool) - n + 1)
	return append([]string(nil), pool[start:start+n]...)
}

// closeMaps closes every fan's live map.
func (w *workload) closeMaps() {
	for _, f := range w.fans {
		if f.live != nil {
			f.live.close()
		}
	}
}

// resolve retries, with the same key, every checkout whose outcome is
// still unknown, until each has a definite answer or the deadline passes.
// It returns how many keys it tried.
func (w *workload) resolve(ctx context.Context, timeout time.Duration) int {
	keys := w.h.unresolved()
	deadline := time.Now().Add(timeout)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, k := range keys {
		f := w.fans[k.Fan]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			f.resolveKey(ctx, k.Key, k.Card, deadline)
		}()
	}
	wg.Wait()
	return len(keys)
}

// finish is the end of every scenario with buyers: wait for the recovery
// worker and the relay, look every unknown outcome up by its key, and wait
// again for what those retries committed to be relayed.
func (w *workload) finish(ctx context.Context, r *report) {
	settled, err := w.c.settle(ctx, w.c.settleTimeout()+w.settleExtra)
	r.figure("settle_seconds", settled.Round(time.Second).Seconds())
	if err != nil {
		r.violation("recovery did not finish: %v", err)
	}
	r.Resolved = w.resolve(ctx, 60*time.Second)
	if _, err := w.c.settle(ctx, 30*time.Second); err != nil {
		r.violation("after the resolution pass: %v", err)
	}
	r.figure("recovery", recoveryTotals(w.c))
}

// settle waits until the recovery worker and the relay have finished
// everything: no checkout unfinished, no payment left authorized, no
// outbox row unsent. Query errors (Postgres restarting) are retried.
func (c *cluster) settle(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	last := ""
	for time.Now().Before(deadline) && ctx.Err() == nil {
		desc, done, err := c.unsettled(ctx)
		if err == nil && done {
			return time.Since(start), nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = desc
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("not settled after %v: %s", timeout, last)
}

// unsettled describes what is left to finish.
func (c *cluster) unsettled(ctx context.Context) (string, bool, error) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var parts []string
	rows, err := c.db.Query(qctx, `SELECT state, count(*) FROM checkouts
		WHERE state NOT IN ('completed', 'failed') GROUP BY state ORDER BY state`)
	if err != nil {
		return "", false, err
	}
	for rows.Next() {
		var st string
		var n int
		rows.Scan(&st, &n)
		parts = append(parts, fmt.Sprintf("checkouts %s=%d", st, n))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", false, err
	}
	var auth, unsent int
	if err := c.db.QueryRow(qctx, `SELECT count(*) FROM sandbox_payments WHERE status = 'authorized'`).Scan(&auth); err != nil {
		return "", false, err
	}
	if err := c.db.QueryRow(qctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&unsent); err != nil {
		return "", false, err
	}
	if auth > 0 {
		parts = append(parts, fmt.Sprintf("payments authorized=%d", auth))
	}
	if unsent > 0 {
		parts = append(parts, fmt.Sprintf("outbox unsent=%d", unsent))
	}
	return strings.Join(parts, ", "), len(parts) == 0, nil
}

// checkoutStates returns the number of checkouts per state now (for
// describing where crashes landed).
func (c *cluster) checkoutStates(ctx context.Context) map[string]int {
	out := map[string]int{}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := c.db.Query(qctx, `SELECT state, count(*) FROM checkouts GROUP BY state`)
	if err != nil {
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n int
		rows.Scan(&st, &n)
		out[st] = n
	}
	var unsent int
	if c.db.QueryRow(qctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL`).Scan(&unsent) == nil && unsent > 0 {
		out["outbox_unsent"] = unsent
	}
	return out
}

// settleTimeout is how long recovery may take: RecoverAfter (the payment
// window + 30 s), one recovery period (5 s) and slack.
func (c *cluster) settleTimeout() time.Duration {
	return c.cfg.paymentWindow + 30*time.Second + 5*time.Second + 25*time.Second
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
