package realtime

import (
	"slices"
	"time"

	"seatmap/booking"
)

// SeatState is the public state of one seat on the live map.
type SeatState uint8

// Seat states, as named on the wire (API.md "Real-time channel").
const (
	Available SeatState = iota
	Held
	Sold
)

// String returns the wire name of s: "available", "held" or "sold".
func (s SeatState) String() string {
	switch s {
	case Held:
		return "held"
	case Sold:
		return "sold"
	default:
		return "available"
	}
}

// Change is the latest state of one seat within a Batch.
type Change struct {
	Seat  string
	State SeatState
	// Holder is the fan holding the seat when State is Held, else "". It is
	// server-side knowledge: encoders must not send it, only use Mine.
	Holder string
}

// Mine reports whether fan sees this change as its own hold.
func (c Change) Mine(fan string) bool { return fan != "" && c.State == Held && c.Holder == fan }

// Batch is every change of one event's seats since the previous batch, one
// entry per seat (the latest state wins), in the order they were resolved.
// Seq is the event's sequence number after the batch; batches and snapshots
// of one event share one strictly increasing sequence.
//
// A Batch is shared by every connection of the event and must not be
// modified by encoders.
type Batch struct {
	EventID string
	Seq     uint64
	Catalog *booking.Catalog
	Changes []Change
}

// SeatView is one seat in a Snapshot: its public state (a held seat is Held
// whoever holds it; the per-fan part travels separately as "mine").
type SeatView struct {
	Seat  string
	State SeatState
}

// Snapshot is the whole map of one event at Seq, in catalog order. It is
// shared by every connection of the event and must not be modified.
type Snapshot struct {
	EventID string
	Seq     uint64
	Catalog *booking.Catalog
	Seats   []SeatView
}

// seatEntry is the cache's knowledge of one seat.
type seatEntry struct {
	state   SeatState
	holder  string    // fan holding it when state is Held
	expires time.Time // when the hold lapses, zero if unknown or not held
	warned  bool      // hold_expiring was sent for this holder and expires
}

// expiryJitter is how far two readings of one hold's expiry (resolve time
// plus PTTL) may differ and still be the same expiry: the round trip to
// Redis. An extension (checkout's PAYMENT_WINDOW) moves it by far more.
const expiryJitter = 50 * time.Millisecond

// seatMap is the per-event seat-state cache: every seat of the catalog with
// its state, holder and hold expiry, and the event's sequence number. It is
// not safe for concurrent use: its room's mutex guards it.
type seatMap struct {
	eventID string
	catalog *booking.Catalog
	index   map[string]int // seat id → position in catalog.Order
	seats   []seatEntry
	byFan   map[string]map[int]struct{} // holder → positions of the seats it holds
	held    int                         // seats held
	seq     uint64
	snap    *Snapshot // cached snapshot at snap.Seq
}

// newSeatMap returns a cache of every seat of cat, all available, at seq.
func newSeatMap(eventID string, cat *booking.Catalog, seq uint64) *seatMap {
	m := &seatMap{
		eventID: eventID,
		catalog: cat,
		index:   make(map[string]int, len(cat.Order)),
		seats:   make([]seatEntry, len(cat.Order)),
		byFan:   make(map[string]map[int]struct{}),
		seq:     seq,
	}
	for i, id := range cat.Order {
		m.index[id] = i
	}
	return m
}

// lookup returns the position of seat, or false for a seat not in the
// catalog.
func (m *seatMap) lookup(seat string) (int, bool) {
	i, ok := m.index[seat]
	return i, ok
}

// set records seat i's resolved state. A sold seat stays sold: any other
// state for it is ignored. It reports whether the public view changed (the
// state or, for a held seat, the holder) and whether the hold's expiry is
// new (a new hold, or one whose lifetime was changed): an expiry change
// alone is recorded but is not a change of the map.
func (m *seatMap) set(i int, st SeatState, holder string, expires time.Time) (changed, newExpiry bool) {
	e := &m.seats[i]
	if e.state == Sold {
		return false, false
	}
	if st != Held {
		holder, expires = "", time.Time{}
	}
	changed = e.state != st || e.holder != holder
	if e.holder != "" && e.holder != holder {
		if set := m.byFan[e.holder]; set != nil {
			delete(set, i)
			if len(set) == 0 {
				delete(m.byFan, e.holder)
			}
		}
	}
	if holder != "" && e.holder != holder {
		set := m.byFan[holder]
		if set == nil {
			set = make(map[int]struct{}, 2)
			m.byFan[holder] = set
		}
		set[i] = struct{}{}
	}
	if !changed && st == Held {
		d := expires.Sub(e.expires)
		if d > -expiryJitter && d < expiryJitter {
			return false, false // the same hold, read again
		}
	}
	newExpiry = st == Held && !expires.IsZero()
	if (e.state == Held) != (st == Held) {
		if st == Held {
			m.held++
		} else {
			m.held--
		}
	}
	e.state, e.holder, e.expires, e.warned = st, holder, expires, false
	return changed, newExpiry
}

// entry returns seat i's cache entry.
func (m *seatMap) entry(i int) seatEntry { return m.seats[i] }

// mine returns the seats fan holds, in catalog order.
func (m *seatMap) mine(fan string) []string {
	idx := m.heldBy(fan)
	if len(idx) == 0 {
		return nil
	}
	slices.Sort(idx)
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = m.catalog.Order[i]
	}
	return out
}

// holds reports whether fan holds any seat.
func (m *seatMap) holds(fan string) bool { return len(m.byFan[fan]) > 0 }

// heldBy returns the positions of the seats fan holds (unordered).
func (m *seatMap) heldBy(fan string) []int {
	set := m.byFan[fan]
	out := make([]int, 0, len(set))
	for i := range set {
		out = append(out, i)
	}
	return out
}

// heldCount returns how many seats are held.
func (m *seatMap) heldCount() int { return m.held }

// snapshot returns the map at the current seq, built once per seq.
func (m *seatMap) snapshot() *Snapshot {
	if m.snap != nil && m.snap.Seq == m.seq {
		return m.snap
	}
	s := &Snapshot{EventID: m.eventID, Seq: m.seq, Catalog: m.catalog, Seats: make([]SeatView, len(m.seats))}
	for i, e := range m.seats {
		s.Seats[i] = SeatView{Seat: m.catalog.Order[i], State: e.state}
	}
	m.snap = s
	return s
}
