package realtime

import (
	"sync"
	"time"
)

// fanoutBudget caps the WebSocket messages per second the process spends on
// seat-change batches and queue positions, across all its events.
// Per-message CPU is what limits fan-out (issue 7: 13–20 µs of this machine
// per delivered message; a 20,000-fan drop profile had 70 % of the server's
// CPU in socket writes), so a batch for n connections costs n messages and
// a queue position one. While changes are rare every batch goes out at the
// next PushInterval tick; when they pour in (a drop: hundreds of holds a
// second) an event's changes coalesce into fewer, larger batches and
// positions come less often, instead of every socket's send queue growing
// until fans see changes seconds late and the process has no CPU left for
// the holds and checkouts themselves.
//
// It is a token bucket that may go into debt: a spend is allowed while
// the balance is positive, however large, so a room of any size still
// gets its batches, just less often; the balance refills at the budget's
// rate up to half a second's worth. (golang.org/x/time/rate refuses any
// spend above its burst, which would starve a room bigger than the burst.)
//
// The rate is the budget's while the process serves no requests, and gives
// way as requests pile up (share): one fixed rate had to choose between
// fresh maps for an idle crowd (20,000/s delivered a change to 10,000 fans
// within ~600 ms at p99, 40,000/s within ~300) and a drop, where the same
// CPU must serve thousands of holds and checkouts a second (a drop sold out
// in 58 s at 12,000/s, 68 s at 20,000/s and not in 90 s at 30,000/s).
// Requests in flight are the signal: when socket writes starve them, they
// take longer, so more are in flight at once (Little's law), and fan-out
// slows until they are served again. The signal is the process's own:
// fan-out without a budget (or at twice it) while no request was in flight
// gave an idle crowd fresher maps, but three servers sharing two cores each
// saw only their own requests, and a drop against them sold a third fewer
// seats in 90 s (PERFORMANCE.md, ninth round); so it was not kept.
type fanoutBudget struct {
	rate float64    // messages per second while idle; 0: unlimited
	max  float64    // the balance's cap while idle
	busy func() int // requests in flight; nil: none

	mu      sync.Mutex
	balance float64
	at      time.Time // when balance was last refilled
}

// newFanoutBudget returns a budget of perSecond messages (≤ 0: unlimited)
// that gives way to busy's requests in flight (busy may be nil).
func newFanoutBudget(perSecond int, busy func() int) *fanoutBudget {
	if perSecond <= 0 {
		return &fanoutBudget{}
	}
	r := float64(perSecond)
	return &fanoutBudget{rate: r, max: r / 2, balance: r / 2, busy: busy}
}

// How fan-out gives way to requests: busyScale requests in flight halve
// its rate, twice as many leave a third, ..., down to minShare of it.
const (
	busyScale = 128
	minShare  = 0.4
)

// share is the part of the rate fan-out may use now.
func (b *fanoutBudget) share() float64 {
	if b.busy == nil {
		return 1
	}
	return max(minShare, 1/(1+float64(max(0, b.busy()))/busyScale))
}

// allow reports whether n messages may be sent at now, and if so spends
// them (the balance may go negative).
func (b *fanoutBudget) allow(now time.Time, n int) bool {
	if b.rate == 0 || n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.After(b.at) { // a clock going back refills nothing
		if !b.at.IsZero() {
			f := b.share()
			b.balance = min(b.max*f, b.balance+b.rate*f*now.Sub(b.at).Seconds())
		}
		b.at = now
	}
	if b.balance <= 0 {
		return false
	}
	b.balance -= float64(n)
	return true
}
