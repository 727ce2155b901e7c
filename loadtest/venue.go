package loadtest

import (
	"math/rand/v2"
	"sync"
	"time"
)

// eventDetail is GET /api/events/{event} (API.md "Events and seats").
type eventDetail struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	SeatsTotal     int    `json:"seats_total"`
	SeatsAvailable int    `json:"seats_available"`
	Sections       []struct {
		ID   string `json:"id"`
		Rows []struct {
			ID    string `json:"id"`
			Seats []struct {
				ID string `json:"id"`
			} `json:"seats"`
		} `json:"rows"`
	} `json:"sections"`
}

// venue is an event's seats in map order (section, row, seat), shared
// read-only by every fan of a process: fans keep one state byte per seat
// index instead of a map of strings.
type venue struct {
	ids   []string
	index map[string]int32
	row   []int32 // row number of each seat, for picking adjacent seats
}

func newVenue(ev *eventDetail) *venue {
	v := &venue{index: map[string]int32{}}
	row := int32(0)
	for _, sec := range ev.Sections {
		for _, r := range sec.Rows {
			for _, s := range r.Seats {
				if _, dup := v.index[s.ID]; dup {
					continue
				}
				v.index[s.ID] = int32(len(v.ids))
				v.ids = append(v.ids, s.ID)
				v.row = append(v.row, row)
			}
			row++
		}
	}
	return v
}

// seat returns the index of a seat id, or -1.
func (v *venue) seat(id []byte) int32 {
	if i, ok := v.index[string(id)]; ok {
		return i
	}
	return -1
}

// names returns the ids of seat indexes.
func (v *venue) names(idx []int32) []string {
	out := make([]string, len(idx))
	for i, s := range idx {
		out[i] = v.ids[s]
	}
	return out
}

// seatMap is one fan's live map: a state byte per seat, updated by the
// fan's socket reader and read by its buyer. It is safe for concurrent use.
type seatMap struct {
	mu      sync.Mutex
	states  []uint8
	changed chan struct{} // gets a token whenever the map changes

	// What the map was last built from, for a diverged map's description.
	seq    uint64    // seq of the last snapshot or batch applied
	at     time.Time // when it was read
	frames int       // snapshots and batches applied, over every connection
}

func newSeatMap(n int) *seatMap {
	return &seatMap{states: make([]uint8, n), changed: make(chan struct{}, 1)}
}

// noteFrame records a snapshot or batch applied (seq, read at recv in
// UnixNano). The caller holds m.mu.
func (m *seatMap) noteFrame(seq uint64, recv int64) {
	m.seq, m.at = seq, time.Unix(0, recv)
	m.frames++
}

func (m *seatMap) notify() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// stTaken marks, in a fan's map, a seat a response said was taken while
// the socket has not said so (yet): pick skips it, and the next state the
// socket sends for the seat replaces the whole byte. The low bits keep what
// the socket said, which is what the map check compares (stMask).
const (
	stTaken uint8 = 0x80
	stMask  uint8 = 0x7f
)

// markTaken marks seats a response said are taken (409 seat_unavailable
// names them), so the fan does not pick them again before its socket tells
// it more. The socket's own state of each seat is kept.
func (m *seatMap) markTaken(idx []int32) {
	m.mu.Lock()
	for _, i := range idx {
		m.states[i] |= stTaken
	}
	m.mu.Unlock()
}

// counts returns how many seats are available and how many are sold, as
// the socket said.
func (m *seatMap) counts() (available, sold int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.states {
		switch s & stMask {
		case stAvailable:
			available++
		case stSold:
			sold++
		}
	}
	return available, sold
}

// pick chooses up to n available seats the way a person does: a random
// available seat, then its available neighbours in the same row (right,
// then left), then, if the row has no more room, other random available
// seats. It returns nil when nothing is available.
func (m *seatMap) pick(v *venue, n int, rng *rand.Rand) []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return pickSeats(m.states, v.row, n, rng)
}

// pickSeats is pick on a plain state slice (row[i] is seat i's row).
func pickSeats(states []uint8, row []int32, n int, rng *rand.Rand) []int32 {
	avail := 0
	for _, s := range states {
		if s == stAvailable {
			avail++
		}
	}
	if avail == 0 || n <= 0 {
		return nil
	}
	n = min(n, avail)
	anchor := nthAvailable(states, rng.IntN(avail))
	out := []int32{int32(anchor)}
	for i := anchor + 1; len(out) < n && i < len(states) && row[i] == row[anchor] && states[i] == stAvailable; i++ {
		out = append(out, int32(i))
	}
	for i := anchor - 1; len(out) < n && i >= 0 && row[i] == row[anchor] && states[i] == stAvailable; i-- {
		out = append(out, int32(i))
	}
	for tries := 0; len(out) < n && tries < 8*n; tries++ {
		c := int32(nthAvailable(states, rng.IntN(avail)))
		if !containsIdx(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// nthAvailable returns the index of the k-th (0-based) available seat.
func nthAvailable(states []uint8, k int) int {
	for i, s := range states {
		if s == stAvailable {
			if k == 0 {
				return i
			}
			k--
		}
	}
	return -1
}

func containsIdx(list []int32, x int32) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}
