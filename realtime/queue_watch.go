package realtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Positions. Each process keeps, per event it tracks, the fans whose sockets
// watch their place. Once per Tick it reads the event's line with the
// admitter step (one command: "now serving" and the rates) and computes every
// local fan's position as ticket − serving, so the Redis cost of a tick does
// not grow with the number of local fans. Fans it does not know yet (new
// watchers, the pre-queue once placed, fans whose ticket was just reached)
// are looked up together in one resolveScript call. Presence of all watched
// fans is refreshed with one ZADD every presenceEvery.

const (
	// queueRoomIdle is how long a room with no watchers, no join or poll in this
	// process and nobody waiting stays tracked.
	queueRoomIdle = 2 * time.Minute
	// recheckNone is how often a watched fan with no place is looked up again
	// (it may have rejoined through another process).
	recheckNone = time.Second
	// queueErrLogEvery rate-limits the per-event error log of Run.
	queueErrLogEvery = 5 * time.Second
)

// queueRoom is one event tracked by this process. Fields are guarded by
// WaitingRoom.mu except the admitter's, which only Run's goroutine touches.
type queueRoom struct {
	id       string
	info     saleInfo
	infoAt   time.Time
	seed     []byte
	active   time.Time // last Join, Status or SetAdmission here
	watchers map[uint64]*queueWatcher
	fans     map[string]*localFan // watched fans
	departed map[string]struct{}  // fans whose last queueWatcher stopped: presence stamped once more

	lastPresence time.Time
	lastErrLog   time.Time

	// admitter state (Run's goroutine only)
	holding   bool
	holdSince time.Time
	lastStep  time.Time
	credit    float64
	samples   []stepSample
}

func newQueueRoom(id string) *queueRoom {
	return &queueRoom{id: id, watchers: map[uint64]*queueWatcher{}, fans: map[string]*localFan{}, departed: map[string]struct{}{}}
}

// localFan is what this process knows of a watched fan's place.
type localFan struct {
	watchers   int
	resolved   bool
	resolvedAt time.Time
	ticket     int64
	entry      string
	pre        bool // in the pre-queue, not yet placed
	until      time.Time
	lastState  string
}

type queueWatcher struct {
	fan    string
	fn     func(QueueStatus)
	last   QueueStatus
	lastAt time.Time
	sent   bool
}

// needsResolve reports whether the fan's place must be read from Redis this
// tick: unknown yet, the pre-queue just placed, its ticket just reached (was
// it admitted or skipped?), or no place (rechecked every recheckNone).
func (f *localFan) needsResolve(ts admitTick, now time.Time) bool {
	switch {
	case !f.resolved:
		return true
	case f.ticket == 0 && f.pre:
		return ts.opened
	case f.until.After(now):
		return false
	case f.ticket > ts.serving:
		return false
	case f.lastState == StateWaiting:
		return true
	default:
		return now.Sub(f.resolvedAt) >= recheckNone
	}
}

// status is the fan's place given the line's state. ok is false while the
// fan is unresolved.
func (f *localFan) status(ts admitTick, info saleInfo, now time.Time) (QueueStatus, bool) {
	switch {
	case !f.resolved:
		return QueueStatus{}, false
	case !f.until.IsZero():
		if f.until.After(now) {
			return QueueStatus{State: StateAdmitted, Until: f.until, EntryID: f.entry}, true
		}
		return QueueStatus{State: StateNone, EntryID: f.entry}, true
	case f.ticket > ts.serving:
		pos := int(f.ticket - ts.serving)
		return QueueStatus{State: StateWaiting, Position: pos, Ahead: pos - 1,
			ETASeconds: etaSeconds(pos, ts.capRate, ts.settings), EntryID: f.entry}, true
	case f.ticket == 0 && f.pre:
		return preStatus(f.entry, info, now), true
	}
	return QueueStatus{State: StateNone, EntryID: f.entry}, true
}

func equalStatus(a, b QueueStatus) bool {
	return a.State == b.State && a.Position == b.Position && a.Ahead == b.Ahead && a.ETASeconds == b.ETASeconds &&
		a.Until.Equal(b.Until) && a.EntryID == b.EntryID && a.PreQueue == b.PreQueue
}

// Watch follows fanID's place in eventID for a connected socket and marks
// the fan present while at least one watch of it runs, so a watched fan is
// never skipped as a leaver. fn receives the fan's status at the first tick
// after Watch (so the caller need not send its own) and then whenever it
// changes: waiting positions and ETAs at most once per PushEvery, the switch
// to admitted (and to none, when an admission lapses or the place is lost) at
// once. fn is called from Run's goroutine, outside any lock, and must be
// quick and never block (enqueue and return). Watch does not join: the
// caller joins first (Join). Call stop when the socket goes; it is idempotent,
// and the fan's last presence is stamped at the next tick so LeaveGrace
// counts from the disconnect. A tick already under way when stop is called
// may still call fn once.
func (w *WaitingRoom) Watch(eventID, fanID string, fn func(QueueStatus)) (stop func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.roomFor(eventID)
	w.next++
	id := w.next
	f, ok := r.fans[fanID]
	if !ok {
		f = &localFan{}
		r.fans[fanID] = f
	}
	f.watchers++
	delete(r.departed, fanID)
	r.watchers[id] = &queueWatcher{fan: fanID, fn: fn}
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			delete(r.watchers, id)
			f.watchers--
			if f.watchers > 0 {
				return
			}
			if r.fans[fanID] == f {
				delete(r.fans, fanID)
			}
			if f.lastState == StateWaiting {
				r.departed[fanID] = struct{}{}
			}
		})
	}
}

// noteFan updates a watched fan's local place after a Join or Status in
// this process, so its watch reflects a rejoin at once.
func (w *WaitingRoom) noteFan(eventID, fanID string, res touchResult, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.rooms[eventID]
	if !ok {
		return
	}
	f, ok := r.fans[fanID]
	if !ok {
		return
	}
	f.resolved, f.resolvedAt = true, now
	f.ticket, f.entry, f.until = res.ticket, res.entry, res.until
	f.pre = res.state == touchPre
}

// Run is the per-process loop, one per WaitingRoom: every Tick, for each
// event this process tracks (watched, or joined, polled or configured here
// recently, or with fans still waiting), it runs the admitter step (taking
// part in the cluster-wide lease), places the pre-queue when the sale opens,
// pushes changed statuses to watchers and refreshes watched fans' presence.
// Redis errors are logged and retried next tick. Run returns nil when ctx is
// done, after handing back the admitter leases it holds.
func (w *WaitingRoom) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Tick)
	defer t.Stop()
	defer w.releaseLeases()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			w.tick(ctx)
		}
	}
}

func (w *WaitingRoom) tick(ctx context.Context) {
	start := time.Now()
	w.mu.Lock()
	rooms := make([]*queueRoom, 0, len(w.rooms))
	for _, r := range w.rooms {
		rooms = append(rooms, r)
	}
	w.mu.Unlock()
	for _, r := range rooms {
		if ctx.Err() != nil {
			return
		}
		w.tickRoom(ctx, r)
	}
	if h := w.Hooks.TickDone; h != nil {
		h(time.Since(start))
	}
}

func (w *WaitingRoom) logErr(r *queueRoom, now time.Time, msg string, err error) {
	if now.Sub(r.lastErrLog) < queueErrLogEvery && !now.Before(r.lastErrLog) {
		return
	}
	r.lastErrLog = now
	w.log.Warn(msg, "event", r.id, "err", err)
}

func (w *WaitingRoom) tickRoom(ctx context.Context, r *queueRoom) {
	now := w.now()
	w.mu.Lock()
	info, infoAt := r.info, r.infoAt
	w.mu.Unlock()
	if infoAt.IsZero() || now.Sub(infoAt) >= eventInfoTTL {
		ev, err := w.events.Event(ctx, r.id)
		if err != nil {
			w.logErr(r, now, "waiting room: load event", err)
		} else {
			info, infoAt = saleInfo{onSaleAt: ev.OnSaleAt}, now
			w.mu.Lock()
			r.info, r.infoAt = info, infoAt
			w.mu.Unlock()
		}
	}
	if infoAt.IsZero() {
		// Unknown event (or Postgres down since this room appeared): touch no
		// Redis keys for it until it is known.
		return
	}

	ts, err := w.step(ctx, r, now)
	if err != nil {
		w.logErr(r, now, "waiting room: tick", err)
		return
	}
	if ts.role > 0 {
		if h := w.Hooks.Admitted; h != nil && ts.admitted > 0 {
			h(ts.admitted)
		}
		if h := w.Hooks.Skipped; h != nil && ts.skipped > 0 {
			h(ts.skipped)
		}
		if h := w.Hooks.AdmitRate; h != nil {
			m, _ := measureRates(r.samples, now, r.holdSince, w.cfg.Tick)
			h(r.id, m)
		}
	}
	if h := w.Hooks.QueueLength; h != nil {
		h(r.id, queueLength(ts.seq, ts.serving, ts.opened, ts.precount))
	}
	if !ts.opened && !now.Before(info.onSaleAt) {
		if err := w.ensureOpen(ctx, r.id); err != nil {
			w.logErr(r, now, "waiting room: open the line", err)
		} else {
			ts.opened = true
		}
	}
	w.positions(ctx, r, ts, info, now)
	w.maybeDrop(r, ts, now)
}

// resolveScript reads the places of several fans at once.
//
// KEYS: tickets entries pre; ARGV: admit-prefix fan...
// Returns {ticket, entry, in-pre, admit-until} per fan.
var resolveScript = redis.NewScript(`
local out = {}
for i = 2, #ARGV do
  local fan = ARGV[i]
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[1], fan)) or 0
  out[#out + 1] = redis.call('HGET', KEYS[2], fan) or ''
  out[#out + 1] = redis.call('SISMEMBER', KEYS[3], fan)
  out[#out + 1] = redis.call('GET', ARGV[1] .. fan) or ''
end
return out`)

// positions resolves what it must, computes every watched fan's status,
// hands changes to the watchers and refreshes presence.
func (w *WaitingRoom) positions(ctx context.Context, r *queueRoom, ts admitTick, info saleInfo, now time.Time) {
	w.mu.Lock()
	var need []string
	for fan, f := range r.fans {
		if f.needsResolve(ts, now) {
			need = append(need, fan)
		}
	}
	w.mu.Unlock()

	if len(need) > 0 {
		k := queueKeysFor(r.id)
		args := make([]any, 0, len(need)+1)
		args = append(args, k.admitPrefix)
		for _, fan := range need {
			args = append(args, fan)
		}
		v, err := resolveScript.Run(ctx, w.rdb, []string{k.tickets, k.entries, k.pre}, args...).Slice()
		if err == nil && len(v) != 4*len(need) {
			err = fmt.Errorf("unexpected reply length %d", len(v))
		}
		if err != nil {
			w.logErr(r, now, "waiting room: resolve fans", err)
		} else {
			w.mu.Lock()
			for i, fan := range need {
				f, ok := r.fans[fan]
				if !ok {
					continue
				}
				f.resolved, f.resolvedAt = true, now
				f.ticket, f.entry = redisInt(v[4*i]), redisString(v[4*i+1])
				f.pre = f.ticket == 0 && redisInt(v[4*i+2]) == 1
				f.until = time.Time{}
				if u := redisInt(v[4*i+3]); u > 0 {
					f.until = time.UnixMilli(u)
				}
			}
			w.mu.Unlock()
		}
	}

	type push struct {
		fn func(QueueStatus)
		st QueueStatus
	}
	var pushes []push
	var present []redis.Z
	score := float64(unixMS(now))

	// Throttle by when the pushes go out, not when the tick started: the
	// Redis round trip before this point can take a while under load.
	pushAt := w.now()
	w.mu.Lock()
	cur := make(map[string]QueueStatus, len(r.fans))
	for fan, f := range r.fans {
		st, ok := f.status(ts, info, now)
		if !ok {
			continue
		}
		f.lastState = st.State
		cur[fan] = st
	}
	for _, wt := range r.watchers {
		st, ok := cur[wt.fan]
		if !ok || (wt.sent && equalStatus(st, wt.last)) {
			continue
		}
		if wt.sent && st.State == StateWaiting && pushAt.Sub(wt.lastAt) < w.cfg.PushEvery && !pushAt.Before(wt.lastAt) {
			continue
		}
		wt.sent, wt.last, wt.lastAt = true, st, pushAt
		pushes = append(pushes, push{wt.fn, st})
	}
	if now.Sub(r.lastPresence) >= w.presenceEvery() || now.Before(r.lastPresence) {
		r.lastPresence = now
		for fan, st := range cur {
			if st.State == StateWaiting {
				present = append(present, redis.Z{Score: score, Member: fan})
			}
		}
	}
	for fan := range r.departed {
		present = append(present, redis.Z{Score: score, Member: fan})
		delete(r.departed, fan)
	}
	w.mu.Unlock()

	for _, p := range pushes {
		p.fn(p.st)
	}
	if h := w.Hooks.PositionsPushed; h != nil && len(pushes) > 0 {
		h(len(pushes))
	}
	if len(present) > 0 {
		// XX: never re-add a fan the admitter has processed; GT: never move a
		// fan's last sighting back.
		err := w.rdb.ZAddArgs(ctx, queueKeysFor(r.id).presence, redis.ZAddArgs{XX: true, GT: true, Members: present}).Err()
		if err != nil {
			w.logErr(r, now, "waiting room: refresh presence", err)
		}
	}
}

// presenceEvery is how often watched fans' presence is stamped: often enough
// that a watched fan is never older than LeaveGrace.
func (w *WaitingRoom) presenceEvery() time.Duration {
	d := w.cfg.LeaveGrace / 4
	if d > 5*time.Second {
		d = 5 * time.Second
	}
	if d < w.cfg.Tick {
		d = w.cfg.Tick
	}
	return d
}

// maybeDrop stops tracking an event nobody here watches or touched lately
// and nobody waits in.
func (w *WaitingRoom) maybeDrop(r *queueRoom, ts admitTick, now time.Time) {
	if ts.seq > ts.serving || (!ts.opened && ts.precount > 0) {
		return
	}
	w.mu.Lock()
	drop := len(r.watchers) == 0 && len(r.departed) == 0 && now.Sub(r.active) > queueRoomIdle
	if drop {
		delete(w.rooms, r.id)
	}
	w.mu.Unlock()
	if drop && r.holding {
		r.holding = false
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := releaseScript.Run(ctx, w.rdb, []string{queueKeysFor(r.id).lease}, w.token).Err(); err != nil {
			w.log.Warn("waiting room: release admitter lease", "event", r.id, "err", err)
		}
	}
}
