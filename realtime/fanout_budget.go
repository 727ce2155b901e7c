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
type fanoutBudget struct {
	rate float64 // messages per second; 0: unlimited
	max  float64 // the balance's cap

	mu      sync.Mutex
	balance float64
	at      time.Time // when balance was last refilled
}

// newFanoutBudget returns a budget of perSecond messages (≤ 0: unlimited).
func newFanoutBudget(perSecond int) *fanoutBudget {
	if perSecond <= 0 {
		return &fanoutBudget{}
	}
	r := float64(perSecond)
	return &fanoutBudget{rate: r, max: r / 2, balance: r / 2}
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
			b.balance = min(b.max, b.balance+b.rate*now.Sub(b.at).Seconds())
		}
		b.at = now
	}
	if b.balance <= 0 {
		return false
	}
	b.balance -= float64(n)
	return true
}
