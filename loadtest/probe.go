package loadtest

import (
	"sync"
	"sync/atomic"
	"time"
)

// probeRing is how many recent probe changes a listener can still match.
// At one change per --probe-interval (default 500 ms) that is half a minute:
// a delivery later than that is not measured (and the run is broken anyway).
const probeRing = 64

// probeChange is one seat change made by the probe fan, stamped in the load
// generator just before the request was sent.
type probeChange struct {
	id    int64 // 1, 2, ... in the order the probe made them
	seat  int32
	state uint8
	sent  int64 // UnixNano
}

// probe measures seat-change → delivered: one probe fan per process holds
// and releases seats one request at a time; every listening fan of the
// process that sees such a change on its socket records now − sent. Only
// this process's probe is matched, so the clock is the process's own.
// It is safe for concurrent use.
type probe struct {
	mu      sync.RWMutex
	ring    [probeRing]probeChange
	last    int64          // id of the newest change
	touched []atomic.Int64 // per seat: id of the newest change on it (0: never)
	changes atomic.Int64
}

func newProbe(seats int) *probe {
	return &probe{touched: make([]atomic.Int64, seats)}
}

// begin registers a change the probe is about to request and returns its
// id. The caller sends the request right after.
func (p *probe) begin(seat int32, state uint8, sent time.Time) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last++
	p.ring[p.last%probeRing] = probeChange{id: p.last, seat: seat, state: state, sent: sent.UnixNano()}
	p.touched[seat].Store(p.last)
	p.changes.Add(1)
	return p.last
}

// match is called by a listener for each change it receives at recv
// (UnixNano). If it is the delivery of a probe change this listener has not
// yet reported — the newest change of that seat to that state sent before
// recv, with an id above *seen — it returns the latency and advances *seen.
// Each listener owns its *seen, so it reports each probe change at most
// once and never matches a change older than one it already reported; a
// change a listener never saw (two changes of one seat coalesced into one
// batch) is simply not sampled.
func (p *probe) match(seat int32, state uint8, recv int64, seen *int64) (time.Duration, bool) {
	if state == stUnknown || seat < 0 || int(seat) >= len(p.touched) || p.touched[seat].Load() <= *seen {
		return 0, false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for id := p.last; id > *seen && id > p.last-probeRing; id-- {
		c := p.ring[id%probeRing]
		if c.seat == seat && c.state == state && c.sent <= recv {
			*seen = id
			return time.Duration(recv - c.sent), true
		}
	}
	return 0, false
}

// newest returns the id of the newest probe change. A listener that gets a
// snapshot sets its *seen to it: the snapshot already shows those changes.
func (p *probe) newest() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.last
}

// cancel voids a change whose request failed, so that no listener matches
// a later change of that seat made by somebody else against it.
func (p *probe) cancel(id int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if id > p.last-probeRing && id <= p.last {
		if c := &p.ring[id%probeRing]; c.id == id {
			c.state = stUnknown
		}
	}
	p.changes.Add(-1)
}
