package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"seatmap/booking"
)

// maxPending bounds the seats remembered between two batches. More distinct
// seats than an event can have means notifications for keys that are not
// seats: the feed forgets them and rebuilds from Redis instead.
const maxPending = booking.MaxSeatsInEvent

// feed is one event's upstream subscription in this process: a PSUBSCRIBE to
// the keyspace notifications of the event's hold keys and an XREAD loop on
// its outbox stream, both only recording what changed, and a batcher that
// every PushInterval resolves those changes against Redis, applies them to
// the room's seat map and fans them out.
//
// Notifications are at-most-once (a pub/sub connection can drop them), so
// every (re)subscription triggers a rebuild from Redis holds and SQL sold
// seats, and a fresh snapshot for every connection.
type feed struct {
	h       *Hub
	r       *room
	eventID string

	holdPrefix    string // hold:{E}:
	channelPrefix string // __keyspace@<db>__:hold:{E}:
	soldKey       string // sold:{E}
	streamKey     string // stream:{E}

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	pending map[string]time.Time // seat → arrival of its first notification since the last batch
	soldNew []soldNote           // seats the outbox stream says were sold
	resync  bool                 // rebuild at the next tick

	streamStart chan string // the stream loop's first id, sent by the first rebuild

	// owned by the batcher goroutine
	catalog  *booking.Catalog
	started  bool // the stream loop was given its start
	expiring expiryHeap
	failures int // consecutive failed ticks, for logError
}

// soldNote is a sale read from the outbox stream and when it was read.
type soldNote struct {
	seat string
	at   time.Time
}

// startFeed subscribes to the event's notifications and starts the feed's
// goroutines; stop ends them.
func (h *Hub) startFeed(r *room) *feed {
	tag := "{" + r.eventID + "}"
	f := &feed{
		h:             h,
		r:             r,
		eventID:       r.eventID,
		holdPrefix:    "hold:" + tag + ":",
		channelPrefix: "__keyspace@" + strconv.Itoa(h.opts.RedisDB) + "__:hold:" + tag + ":",
		soldKey:       "sold:" + tag,
		streamKey:     "stream:" + tag,
		pending:       make(map[string]time.Time),
		streamStart:   make(chan string, 1),
	}
	f.ctx, f.cancel = context.WithCancel(h.ctx)
	h.wg.Add(3)
	go f.receive()
	go f.readStream()
	go f.batch()
	return f
}

// stop ends the feed's goroutines; Hub.Close waits for them.
func (f *feed) stop() { f.cancel() }

// requestResync makes the next tick rebuild the seat map.
func (f *feed) requestResync() {
	f.mu.Lock()
	f.resync = true
	f.mu.Unlock()
}

// receive subscribes to the event's hold notifications and runs the pub/sub
// loop. The loop never blocks and does no Redis work: a (re)subscription
// confirmation asks for a rebuild (so the rebuild's reads always follow the
// subscription, and no change after them goes unnotified), a notification
// about a hold key marks the seat pending. go-redis reconnects and
// resubscribes after a lost connection, which confirms again.
func (f *feed) receive() {
	defer f.h.wg.Done()
	ps := f.h.rdb.PSubscribe(f.ctx, f.channelPrefix+"*")
	defer ps.Close()
	msgs := ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	for {
		select {
		case <-f.ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "psubscribe" {
					f.requestResync()
				}
			case *redis.Message:
				if seat, ok := strings.CutPrefix(m.Channel, f.channelPrefix); ok {
					f.notePending(seat)
				}
			}
		}
	}
}

// notePending marks seat as changed. Any event on a hold key (set, del,
// expired, expire, ...) does: the batcher reads what the key holds now.
func (f *feed) notePending(seat string) {
	now := f.h.opts.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pending[seat]; ok {
		return
	}
	if len(f.pending) >= maxPending {
		f.pending = make(map[string]time.Time)
		f.resync = true
		return
	}
	f.pending[seat] = now
}

// readStream follows the event's outbox stream from the id the first rebuild
// captured (before it read SQL, so no sale falls between the two) and
// records every sold seat. It retries after errors from where it was: the
// stream keeps entries, so a lost connection loses nothing.
func (f *feed) readStream() {
	defer f.h.wg.Done()
	var last string
	select {
	case <-f.ctx.Done():
		return
	case last = <-f.streamStart:
	}
	seen := newRecentSet(4096)
	backoff := newBackoff()
	failures := 0
	for f.ctx.Err() == nil {
		res, err := f.h.rdb.XRead(f.ctx, &redis.XReadArgs{
			Streams: []string{f.streamKey, last},
			Count:   256,
			Block:   f.h.opts.StreamBlock,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if f.ctx.Err() != nil {
				return
			}
			failures++
			f.logError("read outbox stream", err, failures)
			if !backoff.wait(f.ctx) {
				return
			}
			continue
		}
		backoff.reset()
		failures = 0
		now := f.h.opts.Now()
		for _, s := range res {
			for _, m := range s.Messages {
				last = m.ID
				f.noteStreamEntry(m, seen, now)
			}
		}
	}
}

// noteStreamEntry records the seats of a seats_sold entry, once per outbox
// id (the relay may publish an outbox row more than once).
func (f *feed) noteStreamEntry(m redis.XMessage, seen *recentSet, now time.Time) {
	if kind, _ := m.Values["kind"].(string); kind != "seats_sold" {
		return
	}
	if id, _ := m.Values["outbox_id"].(string); id != "" && !seen.add(id) {
		return
	}
	raw, _ := m.Values["seats"].(string)
	var seats []string
	if err := json.Unmarshal([]byte(raw), &seats); err != nil {
		f.logError("decode outbox entry "+m.ID, err, 1)
		return
	}
	f.mu.Lock()
	for _, s := range seats {
		f.soldNew = append(f.soldNew, soldNote{seat: s, at: now})
	}
	f.mu.Unlock()
}

// batch runs a tick every PushInterval until the feed stops.
func (f *feed) batch() {
	defer f.h.wg.Done()
	t := time.NewTicker(f.h.opts.PushInterval)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
			f.tick()
		}
	}
}

// tick sends the hold_expiring warnings that are due, takes what the loops
// recorded (plus the holds that should have lapsed by now) and either
// rebuilds the whole map or resolves those seats. On a Redis or SQL error
// everything taken is put back for the next tick.
func (f *feed) tick() {
	f.mu.Lock()
	resync, sold := f.resync, f.soldNew
	f.resync, f.soldNew = false, nil
	var pending map[string]time.Time
	if len(f.pending) > 0 {
		pending, f.pending = f.pending, make(map[string]time.Time)
	}
	f.mu.Unlock()
	pending = f.runDue(pending)
	if !resync && (len(pending) > 0 || len(sold) > 0) && !f.h.fanout.allow(f.h.opts.Now(), f.r.connections()) {
		// Over the process's fan-out budget: these changes wait and
		// coalesce with the next ones (the latest state of a seat wins).
		f.putBack(false, pending, sold)
		f.h.opts.Hooks.batchDeferred()
		return
	}

	var err error
	switch {
	case resync:
		err = f.rebuild(sold)
	case len(pending) > 0 || len(sold) > 0:
		if f.catalog == nil { // changes before the first rebuild: it covers them
			f.putBack(false, pending, sold)
			return
		}
		err = f.resolve(pending, sold)
	}
	if err != nil {
		if f.ctx.Err() != nil {
			return
		}
		f.failures++
		f.logError("update seat map", err, f.failures)
		f.putBack(resync, pending, sold)
		return
	}
	f.failures = 0
}

// putBack returns taken work to the feed after a failed tick.
func (f *feed) putBack(resync bool, pending map[string]time.Time, sold []soldNote) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resync = f.resync || resync
	for seat, at := range pending {
		if cur, ok := f.pending[seat]; !ok || at.Before(cur) {
			f.pending[seat] = at
		}
	}
	f.soldNew = append(sold, f.soldNew...)
}

// resolve reads the pending seats' holds in one pipelined round trip (MGET
// of the hold keys, their PTTLs and their membership of the sold set),
// applies the result and fans the batch out.
func (f *feed) resolve(pending map[string]time.Time, sold []soldNote) error {
	seats := make([]string, 0, len(pending))
	for seat := range pending {
		if _, ok := f.catalog.Seats[seat]; ok {
			seats = append(seats, seat)
		}
	}
	var hs holdReads
	if len(seats) > 0 {
		var err error
		if hs, err = f.readHolds(seats, true); err != nil {
			return err
		}
	}
	now := f.h.opts.Now()
	r := f.r
	r.mu.Lock()
	m := r.seats
	b := &Batch{EventID: f.eventID, Catalog: f.catalog}
	var origin time.Time
	at := make(map[string]int) // seat → its entry in b.Changes
	record := func(i int, st SeatState, holder string, expires time.Time, since time.Time) {
		changed, newExpiry := m.set(i, st, holder, expires)
		if newExpiry {
			f.expiring.add(m, i, holder, expires, f.h.opts.HoldExpiringBefore)
		}
		if !changed {
			return
		}
		ch := Change{Seat: m.catalog.Order[i], State: st, Holder: holder}
		if st != Held {
			ch.Holder = ""
		}
		if j, ok := at[ch.Seat]; ok {
			b.Changes[j] = ch
		} else {
			at[ch.Seat] = len(b.Changes)
			b.Changes = append(b.Changes, ch)
		}
		if origin.IsZero() || since.Before(origin) {
			origin = since
		}
	}
	for k, seat := range seats {
		i, _ := m.lookup(seat)
		st, holder, expires := hs.state(k, now)
		since := pending[seat]
		if st == Held && f.h.opts.HoldTTL > 0 && hs.ttl[k] > 0 && hs.ttl[k] <= f.h.opts.HoldTTL {
			if set := now.Add(hs.ttl[k] - f.h.opts.HoldTTL); set.Before(since) {
				since = set // the hold was SET before its notification arrived
			}
		}
		record(i, st, holder, expires, since)
	}
	for _, s := range sold {
		if i, ok := m.lookup(s.seat); ok {
			record(i, Sold, "", time.Time{}, s.at)
		}
	}
	if len(b.Changes) > 0 {
		m.seq++
		b.Seq = m.seq
		r.publishBatchLocked(b)
	}
	r.mu.Unlock()
	if len(b.Changes) > 0 {
		f.h.opts.Hooks.notificationLag(f.h.opts.Now().Sub(origin))
	}
	return nil
}

// rebuild reads the whole event's state — holds from Redis (MGET over the
// catalog), sold seats from SQL — applies it, advances the seq and sends
// every connection a snapshot. The first rebuild also loads the catalog and
// starts the stream loop from the stream's current end, read before SQL.
func (f *feed) rebuild(sold []soldNote) error {
	if f.catalog == nil {
		cat, err := f.h.store.Catalog(f.ctx, f.eventID)
		if err != nil {
			return fmt.Errorf("load catalog: %w", err)
		}
		f.catalog = cat
	}
	if !f.started {
		last, err := f.streamEnd()
		if err != nil {
			return err
		}
		f.streamStart <- last
		f.started = true
	}
	hs, err := f.readHolds(f.catalog.Order, false)
	if err != nil {
		return err
	}
	sqlSold, err := f.h.store.SoldSeats(f.ctx, f.eventID)
	if err != nil {
		return fmt.Errorf("read sold seats: %w", err)
	}
	now := f.h.opts.Now()
	r := f.r
	r.mu.Lock()
	if r.seats == nil {
		r.seats = newSeatMap(f.eventID, f.catalog, 0)
	}
	m := r.seats
	for i := range f.catalog.Order {
		st, holder, expires := hs.state(i, now)
		if _, newExpiry := m.set(i, st, holder, expires); newExpiry {
			f.expiring.add(m, i, holder, expires, f.h.opts.HoldExpiringBefore)
		}
	}
	for _, seat := range sqlSold {
		if i, ok := m.lookup(seat); ok {
			m.set(i, Sold, "", time.Time{})
		}
	}
	for _, s := range sold {
		if i, ok := m.lookup(s.seat); ok {
			m.set(i, Sold, "", time.Time{})
		}
	}
	m.seq++
	// Count the rebuild before any socket can see its snapshot, so whoever
	// has the snapshot also sees the count (the hook is a counter: cheap).
	f.h.opts.Hooks.resync()
	r.publishSnapshotLocked()
	r.mu.Unlock()
	return nil
}

// streamEnd returns the id of the stream's last entry ("0-0" when empty).
func (f *feed) streamEnd() (string, error) {
	last, err := f.h.rdb.XRevRangeN(f.ctx, f.streamKey, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("read outbox stream end: %w", err)
	}
	if len(last) == 0 {
		return "0-0", nil
	}
	return last[0].ID, nil
}

// holdReads is what Redis said about some seats' hold keys.
type holdReads struct {
	vals []any           // MGET results: nil or "fan|version"
	ttl  []time.Duration // PTTL (negative: no key / no expiry); nil if not read
	sold []bool          // membership of sold:{E}; nil if not read
}

// state returns seat k's state as read: sold if in the sold set, held by the
// value's fan if the key exists, available otherwise.
func (hs holdReads) state(k int, now time.Time) (SeatState, string, time.Time) {
	if hs.sold != nil && hs.sold[k] {
		return Sold, "", time.Time{}
	}
	v, ok := hs.vals[k].(string)
	if !ok {
		return Available, "", time.Time{}
	}
	holder := v
	if i := strings.LastIndexByte(v, '|'); i >= 0 {
		holder = v[:i]
	}
	var expires time.Time
	if hs.ttl != nil && hs.ttl[k] > 0 {
		expires = now.Add(hs.ttl[k])
	}
	return Held, holder, expires
}

// mgetChunk bounds the keys of one MGET so a big event's rebuild does not
// block Redis for long.
const mgetChunk = 1000

// readHolds reads the hold keys of seats. With small (a batch), one pipeline
// carries MGET, every PTTL and SMISMEMBER of the sold set. Without (a
// rebuild over the catalog), MGETs in chunks come first and PTTL is read
// only for the keys that exist.
func (f *feed) readHolds(seats []string, small bool) (holdReads, error) {
	keys := make([]string, len(seats))
	for i, s := range seats {
		keys[i] = f.holdPrefix + s
	}
	hs := holdReads{vals: make([]any, 0, len(seats)), ttl: make([]time.Duration, len(seats))}
	pipe := f.h.rdb.Pipeline()
	var gets []*redis.SliceCmd
	for i := 0; i < len(keys); i += mgetChunk {
		gets = append(gets, pipe.MGet(f.ctx, keys[i:min(i+mgetChunk, len(keys))]...))
	}
	var ttls []*redis.DurationCmd
	var member *redis.BoolSliceCmd
	if small {
		ttls = make([]*redis.DurationCmd, len(keys))
		for i, k := range keys {
			ttls[i] = pipe.PTTL(f.ctx, k)
		}
		members := make([]any, len(seats))
		for i, s := range seats {
			members[i] = s
		}
		member = pipe.SMIsMember(f.ctx, f.soldKey, members...)
	}
	if _, err := pipe.Exec(f.ctx); err != nil {
		return holdReads{}, fmt.Errorf("read holds: %w", err)
	}
	for _, g := range gets {
		hs.vals = append(hs.vals, g.Val()...)
	}
	if small {
		for i, t := range ttls {
			hs.ttl[i] = t.Val()
		}
		hs.sold = member.Val()
		return hs, nil
	}
	var idx []int
	pipe = f.h.rdb.Pipeline()
	for i, v := range hs.vals {
		if v != nil {
			idx = append(idx, i)
			ttls = append(ttls, pipe.PTTL(f.ctx, keys[i]))
		}
	}
	if len(idx) == 0 {
		return hs, nil
	}
	if _, err := pipe.Exec(f.ctx); err != nil && !errors.Is(err, redis.Nil) {
		return holdReads{}, fmt.Errorf("read hold ttls: %w", err)
	}
	for j, i := range idx {
		hs.ttl[i] = ttls[j].Val()
	}
	return hs, nil
}

// runDue handles the hold expiries that are due: it sends hold_expiring to
// the fans whose holds lapse within HoldExpiringBefore (once per hold, again
// if it was extended), and adds the seats whose holds should have lapsed to
// pending, so this tick reads them — which makes Redis expire them and
// notify every instance. It returns pending, allocated if needed.
func (f *feed) runDue(pending map[string]time.Time) map[string]time.Time {
	now := f.h.opts.Now()
	r := f.r
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.seats
	if m == nil {
		return pending
	}
	for f.expiring.due(now) {
		e := f.expiring.pop()
		if !e.live(m) {
			continue // released, sold, taken over, extended or warned since
		}
		seat := m.catalog.Order[e.seat]
		if e.lapse {
			if pending == nil {
				pending = make(map[string]time.Time)
			}
			if _, ok := pending[seat]; !ok {
				pending[seat] = e.expires
			}
			e.notifyAt = now.Add(lapseRetry) // until the read finds it gone
			f.expiring.push(e)
			continue
		}
		m.seats[e.seat].warned = true
		r.sendHoldExpiringLocked(e.holder, seat, e.expires)
	}
	if f.expiring.Len() > 4*m.heldCount()+1024 {
		f.expiring.compact(m)
	}
	return pending
}

// logError logs the nth consecutive failure of one of the feed's loops: the
// first and then every 50th (a Redis outage would otherwise log ten lines a
// second).
func (f *feed) logError(what string, err error, n int) {
	if n == 1 || n%50 == 0 {
		f.h.opts.Logger.Error("realtime: "+what, "event", f.eventID, "err", err, "failures", n)
	}
}

// recentSet remembers the last n strings added (outbox ids), to drop
// repeats. Not safe for concurrent use.
type recentSet struct {
	set  map[string]struct{}
	ring []string
	next int
}

func newRecentSet(n int) *recentSet {
	return &recentSet{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

// add records s and reports whether it is new.
func (r *recentSet) add(s string) bool {
	if _, ok := r.set[s]; ok {
		return false
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = s
	r.set[s] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
	return true
}

// backoff is a capped exponential wait between retries of a failing Redis
// call: 100ms doubling to 5s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) reset() { b.d = 0 }

// wait sleeps the next delay; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	b.d = min(max(2*b.d, 100*time.Millisecond), 5*time.Second)
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
