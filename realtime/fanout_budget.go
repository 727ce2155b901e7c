package realtime

import (
	"time"

	"golang.org/x/time/rate"
)

// fanoutBudget caps the WebSocket messages per second that seat-change
// batches may cost the process, across all its events. Per-message CPU is
// what limits fan-out (issue 7: 13–20 µs of this machine per delivered
// message), so a batch for n connections costs n messages: while changes
// are rare every batch goes out at the next PushInterval tick, and when they
// pour in (a drop: hundreds of holds a second) an event's changes coalesce
// into fewer, larger batches instead of the process drowning in writes.
//
// A batch never costs more than the burst (half a second of budget), so an
// event however large still gets at least two batches a second.
type fanoutBudget struct {
	lim *rate.Limiter // nil: no limit
}

// newFanoutBudget returns a budget of perSecond messages (≤ 0: unlimited).
func newFanoutBudget(perSecond int) *fanoutBudget {
	if perSecond <= 0 {
		return &fanoutBudget{}
	}
	return &fanoutBudget{lim: rate.NewLimiter(rate.Limit(perSecond), max(1, perSecond/2))}
}

// allow reports whether a batch to n connections may go out at now, and if
// so takes its cost from the budget.
func (b *fanoutBudget) allow(now time.Time, n int) bool {
	if b.lim == nil || n <= 0 {
		return true
	}
	return b.lim.AllowN(now, min(n, b.lim.Burst()))
}
