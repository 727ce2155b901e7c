package realtime

import (
	"container/heap"
	"time"
)

// lapseRetry is how often a hold that should have lapsed is read again
// while Redis still has it (clock jitter between the reading of its PTTL and
// now).
const lapseRetry = 250 * time.Millisecond

// expiryEntry is due at notifyAt for the hold of holder on seat (a catalog
// position) that lapses at expires: either the hold_expiring warning or,
// with lapse, the moment to read the hold key so Redis expires it.
//
// Redis only expires a key (and notifies "expired") when it reads it or its
// active expiry cycle samples it, which can lag by seconds when many keys
// have a TTL. Reading the key at its expiry makes the notification timely
// for every instance.
type expiryEntry struct {
	notifyAt time.Time
	expires  time.Time
	seat     int
	holder   string
	lapse    bool
}

// live reports whether e still describes seat e.seat's current hold in m.
func (e expiryEntry) live(m *seatMap) bool {
	cur := m.seats[e.seat]
	return cur.state == Held && cur.holder == e.holder && cur.expires.Equal(e.expires) && (e.lapse || !cur.warned)
}

// expiryHeap orders pending hold_expiring warnings by due time. Entries are
// never updated in place: a hold that is released, sold or extended leaves a
// stale entry that is skipped when it comes due (or dropped by compact).
type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].notifyAt.Before(h[j].notifyAt) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// add schedules the warning for seat i's hold, before ahead of its expiry,
// and the read at its expiry.
func (h *expiryHeap) add(_ *seatMap, i int, holder string, expires time.Time, before time.Duration) {
	heap.Push(h, expiryEntry{notifyAt: expires.Add(-before), expires: expires, seat: i, holder: holder})
	heap.Push(h, expiryEntry{notifyAt: expires, expires: expires, seat: i, holder: holder, lapse: true})
}

// due reports whether the earliest entry is due at now.
func (h expiryHeap) due(now time.Time) bool { return len(h) > 0 && !h[0].notifyAt.After(now) }

// pop removes and returns the earliest entry.
func (h *expiryHeap) pop() expiryEntry { return heap.Pop(h).(expiryEntry) }

// push adds e.
func (h *expiryHeap) push(e expiryEntry) { heap.Push(h, e) }

// compact drops the entries that no longer match a live hold of m.
func (h *expiryHeap) compact(m *seatMap) {
	kept := (*h)[:0]
	for _, e := range *h {
		if e.live(m) {
			kept = append(kept, e)
		}
	}
	*h = kept
	heap.Init(h)
}
