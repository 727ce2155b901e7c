// Package realtime is seatmap's WebSocket side: the hub that fans seat
// changes out to every connected fan of an event, the per-event seat-state
// cache fed by Redis keyspace notifications and the outbox stream, the
// waiting room and its admitter, and the staff statistics stream.
package realtime

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"seatmap/booking"
)

// SeatStore is what the hub reads from the domain to rebuild an event's seat
// map: the immutable seat catalog and the seats Postgres (the source of
// truth) says are sold. booking.Service provides Catalog; SoldSeats returns
// the ids of every seat of the event with status 'sold', or an error (an
// unknown event may return an empty list). Both must be safe for concurrent
// use.
type SeatStore interface {
	Catalog(ctx context.Context, eventID string) (*booking.Catalog, error)
	SoldSeats(ctx context.Context, eventID string) ([]string, error)
}

// Options are the hub's tunables. Zero fields take the defaults below.
type Options struct {
	// PushInterval is how often an event's pending seat changes are resolved
	// and pushed as one batch (API: PUSH_INTERVAL, default 100ms): at most
	// one `seats` message per connection per interval keeps per-message CPU,
	// the limit of fan-out, bounded whatever the rate of holds.
	PushInterval time.Duration
	// PushBudget is how many WebSocket messages per second seat-change
	// batches may cost this process, all events together (API: PUSH_BUDGET,
	// default 30,000; negative: unlimited), while it serves no requests:
	// the budget gives way to them (Busy). A batch to n connections costs
	// n; a tick over budget leaves its changes pending, to coalesce with
	// later ones into the next batch that fits (see fanoutBudget).
	PushBudget int
	// Busy reports how many requests (holds, checkouts, joins: anything but
	// sockets) the process is serving right now; nil means none. The
	// fan-out budget gives way to them (fanoutBudget.share): a drop's holds
	// and checkouts need the same CPU the socket writes do.
	Busy func() int
	// SendQueue is each connection's send queue capacity in frames (default
	// 64, six seconds of batches at the default interval). A connection whose
	// queue is full is closed as a slow consumer.
	SendQueue int
	// WriteTimeout bounds every WebSocket write (default 5s); a write that
	// misses it closes the connection as a slow consumer.
	WriteTimeout time.Duration
	// Linger is how long an event's upstream subscription outlives its last
	// local connection (default 5s), so a reconnecting fan finds it warm.
	Linger time.Duration
	// HoldTTL is the lifetime of a fresh hold (API: HOLD_TTL). When set, the
	// notification lag of a new hold is measured from its SET in Redis (its
	// remaining TTL tells how long ago that was); when zero, from the
	// notification's arrival.
	HoldTTL time.Duration
	// HoldExpiringBefore is how long before a hold lapses its fan gets a
	// `hold_expiring` message (default 60s, API.md). A hold shorter than
	// that is announced as soon as it is seen.
	HoldExpiringBefore time.Duration
	// QueueInterval is the least time between two `queue` messages to one
	// connection (default 1s, API.md); only the latest position is sent.
	QueueInterval time.Duration
	// ReadLimit is the largest client frame in bytes (default 4096, API.md);
	// a larger one closes the connection with 1009.
	ReadLimit int64
	// RedisDB is the database number rdb uses, which names the keyspace
	// channels (__keyspace@<db>__:...). Default: read from a *redis.Client's
	// options, else 0 (Redis Cluster has only database 0).
	RedisDB int
	// StreamBlock is how long one XREAD of an event's outbox stream waits
	// for entries (default 2s); it bounds how long stopping a feed takes.
	StreamBlock time.Duration
	// Hooks receives the hub's metrics.
	Hooks Hooks
	// Logger receives errors of the upstream subscriptions (default
	// slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o Options) withDefaults(rdb redis.UniversalClient) Options {
	if o.PushInterval <= 0 {
		o.PushInterval = 100 * time.Millisecond
	}
	if o.PushBudget == 0 {
		o.PushBudget = 30_000
	}
	if o.SendQueue <= 0 {
		o.SendQueue = 64
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
	if o.Linger <= 0 {
		o.Linger = 5 * time.Second
	}
	if o.HoldExpiringBefore <= 0 {
		o.HoldExpiringBefore = 60 * time.Second
	}
	if o.QueueInterval <= 0 {
		o.QueueInterval = time.Second
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = 4096
	}
	if o.RedisDB == 0 {
		if c, ok := rdb.(interface{ Options() *redis.Options }); ok {
			o.RedisDB = c.Options().DB
		}
	}
	if o.StreamBlock <= 0 {
		o.StreamBlock = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// errHubClosed is what acquire returns once Close has been called; ServeFan
// then closes the socket as for a shutdown.
var errHubClosed = errors.New("realtime: hub closed")

// Hub is the process's real-time fan-out: a registry of WebSocket
// connections per event and, for every event with at least one connection,
// exactly one upstream subscription (keyspace notifications of the event's
// holds plus its outbox stream) feeding an in-memory seat map. Create one
// per process with NewHub; it is safe for concurrent use.
type Hub struct {
	rdb   redis.UniversalClient
	store SeatStore
	opts  Options

	fanout *fanoutBudget // shared by every event's batches

	ctx    context.Context // cancelled by Close; parent of every feed
	cancel context.CancelFunc
	wg     sync.WaitGroup // feed goroutines

	mu     sync.Mutex
	rooms  map[string]*room
	closed bool
}

// NewHub returns a hub reading holds, notifications and the outbox stream
// from rdb and catalogs and sold seats from store. rdb should be a client of
// its own: each event being watched keeps one pub/sub connection and one
// blocking XREAD connection from it, so its PoolSize must exceed the number
// of events watched at once. Redis must have keyspace notifications for
// generic, string and expired events enabled (notify-keyspace-events
// "Kg$x" or more); the server sets that at start.
func NewHub(rdb redis.UniversalClient, store SeatStore, opts Options) *Hub {
	ctx, cancel := context.WithCancel(context.Background())
	opts = opts.withDefaults(rdb)
	return &Hub{
		rdb:    rdb,
		store:  store,
		opts:   opts,
		fanout: newFanoutBudget(opts.PushBudget, opts.Busy),
		ctx:    ctx,
		cancel: cancel,
		rooms:  make(map[string]*room),
	}
}

// Close stops every upstream subscription and waits for their goroutines.
// Connections still served keep their sockets but get no more changes, so
// the server cancels ServeFan's contexts (closing sockets with 1001) before
// calling Close. Close is idempotent.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closed = true
	for id, r := range h.rooms {
		if r.linger != nil {
			r.linger.Stop()
		}
		delete(h.rooms, id)
	}
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
	return nil
}

// Resync makes the event's feed rebuild its seat map from Redis and SQL and
// push a fresh snapshot to every connection of the event, as after a lost
// Redis connection. It does nothing for an event with no feed running.
func (h *Hub) Resync(eventID string) {
	h.mu.Lock()
	r := h.rooms[eventID]
	h.mu.Unlock()
	if r != nil {
		r.feed.requestResync()
	}
}

// acquire returns the room of eventID, creating it and starting its feed if
// needed, and counts one more user of it. The caller must release it.
func (h *Hub) acquire(eventID string) (*room, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errHubClosed
	}
	r := h.rooms[eventID]
	if r == nil {
		r = newRoom(h, eventID)
		h.rooms[eventID] = r
		r.feed = h.startFeed(r)
	}
	r.refs++
	r.lingerGen++
	if r.linger != nil {
		r.linger.Stop()
		r.linger = nil
	}
	return r, nil
}

// release drops one user of r; the last one leaves the feed running for
// Options.Linger, after which it stops unless someone acquired r again.
func (h *Hub) release(r *room) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.refs--
	if r.refs > 0 || h.closed {
		return
	}
	r.lingerGen++
	gen := r.lingerGen
	r.linger = time.AfterFunc(h.opts.Linger, func() {
		h.mu.Lock()
		stop := r.refs == 0 && r.lingerGen == gen && h.rooms[r.eventID] == r
		if stop {
			delete(h.rooms, r.eventID)
		}
		h.mu.Unlock()
		if stop {
			r.feed.stop()
		}
	})
}

// activeEvents returns the ids of events with a running feed.
func (h *Hub) activeEvents() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.rooms))
	for id := range h.rooms {
		out = append(out, id)
	}
	return out
}

// room is one event's local fan-out: its connections grouped by encoder
// format, its seat map and its feed. mu guards everything below it; the
// feed applies changes and fans them out under mu, and a joining connection
// takes its snapshot under mu, so every connection sees one ordered
// sequence: snapshot, then each later batch exactly once. Fan-out only
// enqueues without blocking, so holding mu during it is cheap.
type room struct {
	hub     *Hub
	eventID string
	feed    *feed

	// guarded by hub.mu
	refs      int
	lingerGen uint64
	linger    *time.Timer

	mu     sync.Mutex
	groups []*group           // one per encoder format
	byFan  map[string][]*conn // connections of each fan (tabs)
	seats  *seatMap           // nil until the feed's first rebuild
	nconns int
}

// group is the connections of a room that share one encoder format, with
// the snapshot encoded for them at snapSeq.
type group struct {
	enc      Encoder
	conns    []*conn
	snapSeq  uint64
	snapBody []byte
	snapTail []byte // SnapshotMine for fans holding nothing
}

func newRoom(h *Hub, eventID string) *room {
	return &room{hub: h, eventID: eventID, byFan: make(map[string][]*conn)}
}

// add registers c; once the seat map is ready c is sent a snapshot (and the
// hold_expiring warnings its fan was already given).
func (r *room) add(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var g *group
	for _, x := range r.groups {
		if x.enc.Format() == c.enc.Format() {
			g = x
			break
		}
	}
	if g == nil {
		g = &group{enc: c.enc}
		r.groups = append(r.groups, g)
	}
	c.grp, c.slot = g, len(g.conns)
	g.conns = append(g.conns, c)
	r.byFan[c.fan] = append(r.byFan[c.fan], c)
	r.nconns++
	if r.seats == nil {
		return // the first rebuild sends every connection its snapshot
	}
	snap := r.seats.snapshot()
	body, tail := r.snapshotFor(g, snap)
	if r.seats.holds(c.fan) {
		tail = g.enc.SnapshotMine(snap, r.seats.mine(c.fan))
	}
	c.enqueue(frame{body: body, tail: tail, seq: snap.Seq})
	for _, i := range r.seats.heldBy(c.fan) {
		if e := r.seats.entry(i); e.warned {
			c.enqueue(frame{body: c.enc.HoldExpiring(r.seats.catalog.Order[i], e.expires)})
		}
	}
}

// connections returns how many connections r has.
func (r *room) connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nconns
}

// remove unregisters c.
func (r *room) remove(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := c.grp
	if g == nil {
		return
	}
	last := len(g.conns) - 1
	moved := g.conns[last]
	g.conns[c.slot] = moved
	moved.slot = c.slot
	g.conns[last] = nil
	g.conns = g.conns[:last]
	c.grp = nil
	tabs := r.byFan[c.fan]
	for i, x := range tabs {
		if x == c {
			tabs = append(tabs[:i], tabs[i+1:]...)
			break
		}
	}
	if len(tabs) == 0 {
		delete(r.byFan, c.fan)
	} else {
		r.byFan[c.fan] = tabs
	}
	r.nconns--
}

// snapshotFor returns g's encoding of snap: the shared body and the tail of
// fans holding nothing, encoded once per seq.
func (r *room) snapshotFor(g *group, snap *Snapshot) (body, tail []byte) {
	if g.snapBody == nil || g.snapSeq != snap.Seq {
		g.snapSeq = snap.Seq
		g.snapBody = g.enc.Snapshot(snap)
		g.snapTail = g.enc.SnapshotMine(snap, nil)
	}
	return g.snapBody, g.snapTail
}

// publishSnapshotLocked sends the current snapshot to every connection. The
// caller holds r.mu and has advanced the seq.
func (r *room) publishSnapshotLocked() {
	snap := r.seats.snapshot()
	for _, g := range r.groups {
		body, empty := r.snapshotFor(g, snap)
		var tails map[string][]byte // per fan holding seats, shared by its tabs
		for _, c := range g.conns {
			tail := empty
			if r.seats.holds(c.fan) {
				t, ok := tails[c.fan]
				if !ok {
					if tails == nil {
						tails = make(map[string][]byte)
					}
					t = g.enc.SnapshotMine(snap, r.seats.mine(c.fan))
					tails[c.fan] = t
				}
				tail = t
			}
			c.enqueue(frame{body: body, tail: tail, seq: snap.Seq})
		}
	}
}

// publishBatchLocked fans b out to every connection: one encoding per
// format shared by all, plus one per format for each fan holding a seat of
// the batch, given only to that fan's connections. The caller holds r.mu.
func (r *room) publishBatchLocked(b *Batch) {
	var fans []string // holders of the batch's held seats, without repeats
	for _, ch := range b.Changes {
		if ch.State == Held && ch.Holder != "" && len(r.byFan[ch.Holder]) > 0 && !contains(fans, ch.Holder) {
			fans = append(fans, ch.Holder)
		}
	}
	for _, g := range r.groups {
		if len(g.conns) == 0 {
			continue
		}
		shared := g.enc.Seats(b, "")
		for _, fan := range fans {
			var own []byte
			for _, c := range r.byFan[fan] {
				if c.grp != g {
					continue
				}
				if own == nil {
					own = g.enc.Seats(b, fan)
				}
				c.variantSeq, c.variant = b.Seq, own
			}
		}
		for _, c := range g.conns {
			msg := shared
			if c.variantSeq == b.Seq && c.variant != nil {
				msg, c.variant = c.variant, nil
			}
			c.enqueue(frame{body: msg, seq: b.Seq})
		}
	}
}

// sendHoldExpiringLocked warns every connection of fan that its hold on
// seat ends at expires. The caller holds r.mu.
func (r *room) sendHoldExpiringLocked(fan, seat string, expires time.Time) {
	var done []*group
	var msgs [][]byte
	for _, c := range r.byFan[fan] {
		var msg []byte
		for i, g := range done {
			if g == c.grp {
				msg = msgs[i]
			}
		}
		if msg == nil {
			msg = c.enc.HoldExpiring(seat, expires)
			done, msgs = append(done, c.grp), append(msgs, msg)
		}
		c.enqueue(frame{body: msg})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
