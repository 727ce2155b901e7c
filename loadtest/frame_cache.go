package loadtest

import "sync"

// frameCache decodes each distinct seat frame once per process. The server
// encodes a batch or a snapshot once and writes the same bytes to every
// fan, so the ten thousand fans of one load generator process would
// otherwise parse the same frame ten thousand times: a drop profile showed
// the workers spending half their CPU on that (parsing and seat-id lookups),
// starving their own HTTP requests while the server sat idle. Each fan
// still reads every byte from its own socket; only the decoding is shared.
// Frames that differ per fan (a `mine` variant, queue positions) simply
// miss.
type frameCache struct {
	mu      sync.Mutex
	entries map[string]*decodedFrame
	fifo    []string // insertion order, for eviction
	max     int
}

// decodedFrame is a parsed snapshot or seats message: its header and its
// seats as venue indexes, in frame order (unknown seat ids left out).
type decodedFrame struct {
	h     header
	seats []decodedSeat
}

type decodedSeat struct {
	i     int32
	state uint8
}

// frameCacheSize bounds the frames kept: a few PUSH_INTERVALs of batches
// and snapshots (a 10,000-seat snapshot is ~200 KB).
const frameCacheSize = 64

func newFrameCache() *frameCache {
	return &frameCache{entries: make(map[string]*decodedFrame, frameCacheSize), max: frameCacheSize}
}

// decode returns b decoded against v, from the cache when the same bytes
// were decoded before. Only snapshots and seats messages are cached.
func (c *frameCache) decode(b []byte, v *venue) (*decodedFrame, error) {
	c.mu.Lock()
	d := c.entries[string(b)]
	c.mu.Unlock()
	if d != nil {
		return d, nil
	}
	rec := &frameRecorder{v: v}
	h, err := parseMessage(b, rec)
	if err != nil {
		return nil, err
	}
	d = &decodedFrame{h: h, seats: rec.seats}
	if h.typ == msgSnapshot || h.typ == msgSeats {
		c.put(string(b), d)
	}
	return d, nil
}

func (c *frameCache) put(key string, d *decodedFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; ok {
		return
	}
	if len(c.fifo) >= c.max {
		delete(c.entries, c.fifo[0])
		c.fifo = c.fifo[1:]
	}
	c.entries[key] = d
	c.fifo = append(c.fifo, key)
}

// frameRecorder is the visitor that records a frame's seats.
type frameRecorder struct {
	v     *venue
	seats []decodedSeat
}

func (r *frameRecorder) snapshotBegin() { r.seats = r.seats[:0] }

func (r *frameRecorder) snapshotSeat(id []byte, state uint8) {
	if i := r.v.seat(id); i >= 0 {
		r.seats = append(r.seats, decodedSeat{i: i, state: state})
	}
}

func (r *frameRecorder) snapshotMine([]byte) {}

func (r *frameRecorder) change(id []byte, state uint8, _ bool) {
	if i := r.v.seat(id); i >= 0 {
		r.seats = append(r.seats, decodedSeat{i: i, state: state})
	}
}
