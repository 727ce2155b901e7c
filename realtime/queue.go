package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"seatmap/booking"
)

// The waiting room keeps all of its state in Redis so that any number of
// `seatmap serve` processes share one line per event. Every key of event E
// carries the hash tag {E}, so each Lua script below touches a single Redis
// Cluster slot (the admitter script builds admit:{E}:{fan} names from a prefix
// argument; they hash to the same slot).
//
//	queue:{E}:seq        string  ticket numbers handed out so far (INCR)
//	queue:{E}:serving    string  every ticket <= serving has been processed (admitted or skipped)
//	queue:{E}:tickets    hash    fan → ticket (a fan's place; one per fan, idempotent join)
//	queue:{E}:order      zset    fan scored by ticket, only tickets > serving (the admitter's to-do list)
//	queue:{E}:entries    hash    fan → public entry id (random, never changes for a fan)
//	queue:{E}:presence   zset    fan scored by the last time (unix ms) it was seen: socket watched or HTTP poll
//	queue:{E}:pre        set     fans who joined before on_sale_at, not yet placed
//	queue:{E}:precount   string  SCARD of pre, readable with MGET
//	queue:{E}:opened     string  set (unix ms) once the pre-queue has been placed and the line is open
//	queue:{E}:shuffled   list    the pre-queue's entry ids in their drawn order (revealed by Shuffle)
//	queue:{E}:opening    string  set (PX 10 s) while a process places the pre-queue: no one joins it meanwhile
//	queue:{E}:admitted   string  fans admitted so far (total)
//	queue:{E}:rate       string  staff-set admission rate per second (absent: WaitingRoomConfig.AdmitRate)
//	queue:{E}:paused     string  "1" while staff paused admission
//	queue:{E}:mrate      string  measured admissions per second over the last 5 s (PX, written by the admitter)
//	queue:{E}:caprate    string  measured throughput while fans were waiting (PX; drives ETAs)
//	admit:{E}:{fan}      string  admission: its expiry as unix ms, PX AdmitTTL
//	admitter:{E}         string  lease: the token of the process running the admitter, PX LeaseTTL
type queueKeys struct {
	seq, serving, tickets, order, entries, presence, pre, precount, opened, shuffled, opening string
	admitted, rate, paused, mrate, caprate, lease, admitPrefix                                string
}

func queueKeysFor(eventID string) queueKeys {
	t := "{" + eventID + "}"
	q := "queue:" + t + ":"
	return queueKeys{
		seq: q + "seq", serving: q + "serving", tickets: q + "tickets", order: q + "order",
		entries: q + "entries", presence: q + "presence", pre: q + "pre", precount: q + "precount",
		opened: q + "opened", shuffled: q + "shuffled", opening: q + "opening", admitted: q + "admitted", rate: q + "rate",
		paused: q + "paused", mrate: q + "mrate", caprate: q + "caprate",
		lease: "admitter:" + t, admitPrefix: "admit:" + t + ":",
	}
}

// Queue states reported in QueueStatus.State (API.md "Waiting room").
const (
	StateNone     = "none"
	StateWaiting  = "waiting"
	StateAdmitted = "admitted"
)

// QueueStatus is one fan's place in one event's waiting room.
type QueueStatus struct {
	// State is StateNone (never joined, or the place was lost: skipped as a
	// leaver or the admission expired — joining again queues at the back),
	// StateWaiting or StateAdmitted.
	State string
	// Position is the 1-based place in line while waiting: the number of
	// tickets from "now serving" up to this fan's. It counts leavers not yet
	// skipped, so it is an upper bound, and it never increases for a ticket.
	// It is 0 in the pre-queue, where places are not yet drawn.
	Position int
	// Ahead is Position-1 (0 in the pre-queue).
	Ahead int
	// ETASeconds estimates the wait: Position divided by the measured
	// admission rate (the configured rate until one is measured). In the
	// pre-queue it is the time until the sale opens. It is -1 while
	// admission is paused or its rate is 0 (unknown).
	ETASeconds int
	// Until is when the admission ends (StateAdmitted only).
	Until time.Time
	// EntryID is the fan's public entry id in this event, the input of the
	// verifiable pre-queue shuffle (empty for StateNone of a fan that never joined).
	EntryID string
	// PreQueue is true while the fan waits before on_sale_at (State is
	// StateWaiting, Position and Ahead are 0).
	PreQueue bool
}

// WaitingRoomConfig holds the waiting room's tunables. Zero durations take the
// defaults of DefaultWaitingRoomConfig; AdmitRate has no default because 0 is
// meaningful (API: ADMIT_RATE=0 pauses admission).
type WaitingRoomConfig struct {
	// AdmitRate is fans admitted per second per event, cluster-wide, unless
	// staff set another rate with SetAdmission (API: ADMIT_RATE, default 500:
	// what one event's seat map and checkout comfortably absorb). 0 admits nobody.
	AdmitRate int
	// AdmitTTL is how long an admission lasts without a purchase (API:
	// ADMIT_TTL, default 10m).
	AdmitTTL time.Duration
	// LeaveGrace is how long a fan may go unseen (no watched socket, no HTTP
	// poll) before the admitter skips them (default 30s: a reconnect or a page
	// reload fits easily, an abandoned tab does not hold up the line).
	LeaveGrace time.Duration
	// Tick is the period of the per-process loop: one admitter step and one
	// position computation per event (default 50ms, so admission is smooth:
	// ADMIT_RATE/20 fans per step rather than a burst each second).
	Tick time.Duration
	// PushEvery is the least time between two queue pushes to one queueWatcher
	// (default 1s, API.md: positions at most once a second).
	PushEvery time.Duration
	// LeaseTTL is the admitter lease's lifetime, renewed every Tick; a dead
	// holder's lease lapses after it, so another process takes over within
	// LeaseTTL+Tick (default 1.5s, keeping takeover under 2 s). Must exceed Tick.
	LeaseTTL time.Duration
}

// DefaultWaitingRoomConfig returns the defaults documented on each field.
func DefaultWaitingRoomConfig() WaitingRoomConfig {
	return WaitingRoomConfig{
		AdmitRate:  500,
		AdmitTTL:   10 * time.Minute,
		LeaveGrace: 30 * time.Second,
		Tick:       50 * time.Millisecond,
		PushEvery:  time.Second,
		LeaseTTL:   1500 * time.Millisecond,
	}
}

func (c WaitingRoomConfig) withDefaults() WaitingRoomConfig {
	d := DefaultWaitingRoomConfig()
	if c.AdmitRate < 0 {
		c.AdmitRate = 0
	}
	if c.AdmitTTL <= 0 {
		c.AdmitTTL = d.AdmitTTL
	}
	if c.LeaveGrace <= 0 {
		c.LeaveGrace = d.LeaveGrace
	}
	if c.Tick <= 0 {
		c.Tick = d.Tick
	}
	if c.PushEvery <= 0 {
		c.PushEvery = d.PushEvery
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = d.LeaseTTL
	}
	if c.LeaseTTL < 3*c.Tick {
		c.LeaseTTL = 3 * c.Tick
	}
	return c
}

// WaitingRoomHooks receive the waiting room's metrics; the server wires them to its
// metrics registry. Nil funcs are skipped. They are called from Run's
// goroutine and must be quick. Set them before calling Run.
type WaitingRoomHooks struct {
	// Admitted reports fans admitted by one admitter step of this process.
	Admitted func(n int)
	// Skipped reports leavers skipped by one admitter step of this process.
	Skipped func(n int)
	// PositionsPushed reports queue statuses handed to watchers in one tick.
	PositionsPushed func(n int)
	// QueueLength reports, every tick, the fans waiting in an event tracked by
	// this process (tickets not yet served plus the unplaced pre-queue).
	QueueLength func(eventID string, n int)
	// AdmitRate reports the measured admissions per second of an event whose
	// admitter runs in this process, every tick.
	AdmitRate func(eventID string, perSecond float64)
	// TickDone reports how long one tick of Run took.
	TickDone func(d time.Duration)
}

// AdmissionSettings is what staff control: the rate (fans per second) and
// whether admission is paused.
type AdmissionSettings struct {
	Rate   int  `json:"rate"`
	Paused bool `json:"paused"`
}

// QueueStats are an event's waiting-room figures for the staff dashboard.
type QueueStats struct {
	// QueueLength is the fans waiting: tickets not yet served (leavers
	// included until skipped) plus the unplaced pre-queue.
	QueueLength int `json:"queue_length"`
	// Admitted is the fans admitted so far (total, expired admissions included).
	Admitted int `json:"admitted"`
	// AdmitRate is the measured admissions per second over the last 5 s.
	AdmitRate float64 `json:"admit_rate"`
	// Settings are the admission settings in force.
	Settings AdmissionSettings `json:"settings"`
}

// MaxAdmitRate bounds the admission rate staff may set.
const MaxAdmitRate = 1_000_000

// WaitingRoom is the cluster-wide waiting room of every event: fans join and
// poll through Join and Status, sockets Watch their place, and Run (one per
// process) admits fans and pushes positions. All of its state lives in Redis,
// so any number of processes share one line per event. It is safe for
// concurrent use.
type WaitingRoom struct {
	// Hooks receive metrics; set before Run.
	Hooks WaitingRoomHooks

	rdb    redis.UniversalClient
	events *booking.Service
	cfg    WaitingRoomConfig
	log    *slog.Logger
	now    func() time.Time
	token  string // this process's admitter lease identity

	mu    sync.Mutex
	rooms map[string]*queueRoom // events this process tracks
	next  uint64                // queueWatcher ids

	// keepLeaseOnStop makes Run leave its leases in place when it returns, as
	// a crashed process would (tests of the takeover set it).
	keepLeaseOnStop bool
}

// NewWaitingRoom returns a WaitingRoom over rdb, reading events (on_sale_at,
// the shuffle seed) from events. Zero fields of cfg take their defaults; log
// and now may be nil (slog.Default, time.Now). Call Run to admit fans and
// push positions.
func NewWaitingRoom(rdb redis.UniversalClient, events *booking.Service, cfg WaitingRoomConfig, log *slog.Logger, now func() time.Time) *WaitingRoom {
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return &WaitingRoom{
		rdb: rdb, events: events, cfg: cfg.withDefaults(), log: log, now: now,
		token: hex.EncodeToString(b[:]), rooms: map[string]*queueRoom{},
	}
}

// Config returns the effective configuration (defaults applied).
func (w *WaitingRoom) Config() WaitingRoomConfig { return w.cfg }

// wrUnavailable wraps a Redis failure as booking.ErrUnavailable, keeping the
// cause for the logs.
func wrUnavailable(what string, err error) error {
	return fmt.Errorf("%w: waiting room: %s: %w", booking.ErrUnavailable, what, err)
}

func newEntryID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func unixMS(t time.Time) int64 { return t.UnixMilli() }

// saleInfo is what the waiting room needs of an event.
type saleInfo struct {
	onSaleAt time.Time
}

const eventInfoTTL = time.Minute

// roomFor returns the tracked room of eventID, creating it. Caller holds w.mu.
func (w *WaitingRoom) roomFor(eventID string) *queueRoom {
	r, ok := w.rooms[eventID]
	if !ok {
		r = newQueueRoom(eventID)
		w.rooms[eventID] = r
	}
	return r
}

// eventInfo returns the event's on-sale time, cached for eventInfoTTL, and
// marks the event as active in this process so Run takes part in its
// admission. It returns not_found for an unknown event.
func (w *WaitingRoom) eventInfo(ctx context.Context, eventID string) (saleInfo, error) {
	if !booking.ValidEventID(eventID) {
		return saleInfo{}, booking.Errorf(booking.ECodeNotFound, "no such event")
	}
	now := w.now()
	w.mu.Lock()
	r := w.roomFor(eventID)
	r.active = now
	info, at := r.info, r.infoAt
	w.mu.Unlock()
	if !at.IsZero() && now.Sub(at) < eventInfoTTL {
		return info, nil
	}
	ev, err := w.events.Event(ctx, eventID)
	if err != nil {
		return saleInfo{}, err
	}
	info = saleInfo{onSaleAt: ev.OnSaleAt}
	w.mu.Lock()
	r.info, r.infoAt = info, now
	w.mu.Unlock()
	return info, nil
}

// touchScript joins (ARGV[2] "pre" or "open") or reads (ARGV[2] "status") a
// fan's place, refreshing its presence while it waits. "open" answers state 4
// (need_open) when the pre-queue has not been placed yet: the caller places it
// (ensureOpen) and retries, so nobody who joins after on_sale_at can get ahead
// of the pre-queue. A ticket at or below serving without a live admission was
// skipped or has expired: a join queues it again at the back.
//
// KEYS: tickets order seq serving pre entries presence opened precount caprate rate paused
// ARGV: fan mode entry-candidate now-ms admit-prefix
// Returns {state, ticket, serving, entry, until-ms, caprate, rate, paused}
// with state 0 none, 1 waiting, 2 admitted, 3 pre-queue, 4 need_open.
var touchScript = redis.NewScript(`
local fan, mode, now = ARGV[1], ARGV[2], tonumber(ARGV[4])
local serving = tonumber(redis.call('GET', KEYS[4]) or '0')
local ticket = tonumber(redis.call('HGET', KEYS[1], fan))
local entry = redis.call('HGET', KEYS[6], fan)
local opened = redis.call('EXISTS', KEYS[8]) == 1
local joining = mode ~= 'status'
local state, untilMs = 0, ''
local function newTicket()
  ticket = redis.call('INCR', KEYS[3])
  redis.call('HSET', KEYS[1], fan, ticket)
  redis.call('ZADD', KEYS[2], ticket, fan)
  redis.call('ZADD', KEYS[7], now, fan)
  state = 1
end
if ticket then
  if ticket > serving then
    state = 1
    redis.call('ZADD', KEYS[7], now, fan)
  else
    local u = redis.call('GET', ARGV[5] .. fan)
    if u and tonumber(u) > now then
      state, untilMs = 2, u
    elseif joining then
      newTicket()
    end
  end
elseif (not opened) and redis.call('SISMEMBER', KEYS[5], fan) == 1 then
  state = 3
  redis.call('ZADD', KEYS[7], now, fan)
elseif not joining then
  state = 0
elseif opened then
  newTicket()
elseif mode == 'pre' and redis.call('EXISTS', KEYS[13]) == 0 then
  redis.call('SADD', KEYS[5], fan)
  redis.call('INCR', KEYS[9])
  redis.call('ZADD', KEYS[7], now, fan)
  state = 3
else
  state = 4
end
if joining and state ~= 4 and not entry then
  entry = ARGV[3]
  redis.call('HSET', KEYS[6], fan, entry)
end
return {state, ticket or 0, serving, entry or '', untilMs,
  redis.call('GET', KEYS[10]) or '', redis.call('GET', KEYS[11]) or '', redis.call('GET', KEYS[12]) or ''}
`)

const (
	touchNone = iota
	touchWaiting
	touchAdmitted
	touchPre
	touchNeedOpen
)

type touchResult struct {
	state    int64
	ticket   int64
	serving  int64
	entry    string
	until    time.Time
	capRate  float64
	settings AdmissionSettings
}

func (w *WaitingRoom) touch(ctx context.Context, eventID, fanID, mode string, now time.Time) (touchResult, error) {
	k := queueKeysFor(eventID)
	v, err := touchScript.Run(ctx, w.rdb,
		[]string{k.tickets, k.order, k.seq, k.serving, k.pre, k.entries, k.presence, k.opened, k.precount, k.caprate, k.rate, k.paused, k.opening},
		fanID, mode, newEntryID(), unixMS(now), k.admitPrefix).Slice()
	if err != nil {
		return touchResult{}, wrUnavailable("join", err)
	}
	if len(v) != 8 {
		return touchResult{}, fmt.Errorf("waiting room: touch: unexpected reply %v", v)
	}
	res := touchResult{
		state: redisInt(v[0]), ticket: redisInt(v[1]), serving: redisInt(v[2]), entry: redisString(v[3]),
		capRate:  redisFloat(v[5]),
		settings: w.settingsFrom(redisString(v[6]), redisString(v[7])),
	}
	if u := redisInt(v[4]); u > 0 {
		res.until = time.UnixMilli(u)
	}
	return res, nil
}

func redisInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func redisString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

func redisFloat(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0
		}
		return f
	}
	return 0
}

// settingsFrom reads the stored rate and paused flag ("" when unset).
func (w *WaitingRoom) settingsFrom(rate, paused string) AdmissionSettings {
	s := AdmissionSettings{Rate: w.cfg.AdmitRate, Paused: paused == "1"}
	if n, err := strconv.Atoi(rate); err == nil && n >= 0 {
		s.Rate = n
	}
	return s
}

// etaSeconds is the expected wait for position at the measured throughput
// capRate (bounded by the configured rate, which a fresh change may have
// lowered), or -1 when admission is paused.
func etaSeconds(position int, capRate float64, s AdmissionSettings) int {
	if s.Paused || s.Rate <= 0 {
		return -1
	}
	r := float64(s.Rate)
	if capRate > 0 && capRate < r {
		r = capRate
	}
	return int(math.Ceil(float64(position) / r))
}

func (w *WaitingRoom) statusFrom(res touchResult, info saleInfo, now time.Time) QueueStatus {
	switch res.state {
	case touchWaiting:
		pos := int(res.ticket - res.serving)
		return QueueStatus{State: StateWaiting, Position: pos, Ahead: pos - 1,
			ETASeconds: etaSeconds(pos, res.capRate, res.settings), EntryID: res.entry}
	case touchPre:
		return preStatus(res.entry, info, now)
	case touchAdmitted:
		return QueueStatus{State: StateAdmitted, Until: res.until, EntryID: res.entry}
	}
	return QueueStatus{State: StateNone, EntryID: res.entry}
}

func preStatus(entry string, info saleInfo, now time.Time) QueueStatus {
	eta := int(math.Ceil(info.onSaleAt.Sub(now).Seconds()))
	if eta < 0 {
		eta = 0
	}
	return QueueStatus{State: StateWaiting, PreQueue: true, ETASeconds: eta, EntryID: entry}
}

func checkFan(fanID string) error {
	if fanID == "" || len(fanID) > 256 {
		return booking.Errorf(booking.ECodeBadRequest, "a session is required to join the waiting room")
	}
	return nil
}

// Join puts fanID in eventID's line, or returns its existing place: it is
// idempotent per fan (five tabs, one place), refreshes the fan's presence and
// never moves a fan who already has a place. Before the event's on_sale_at
// the fan enters the pre-queue; at or after it the fan gets the next ticket
// (placing the pre-queue first if nobody has yet). A fan whose admission
// expired or who was skipped as a leaver is queued again at the back. Errors:
// not_found (unknown event), bad_request (empty fan id), unavailable.
func (w *WaitingRoom) Join(ctx context.Context, eventID, fanID string) (QueueStatus, error) {
	if err := checkFan(fanID); err != nil {
		return QueueStatus{}, err
	}
	info, err := w.eventInfo(ctx, eventID)
	if err != nil {
		return QueueStatus{}, err
	}
	for attempt := 0; attempt < 3; attempt++ {
		now := w.now()
		mode := "open"
		if now.Before(info.onSaleAt) {
			mode = "pre"
		}
		res, err := w.touch(ctx, eventID, fanID, mode, now)
		if err != nil {
			return QueueStatus{}, err
		}
		if res.state == touchNeedOpen {
			if err := w.ensureOpen(ctx, eventID); err != nil {
				return QueueStatus{}, err
			}
			continue
		}
		w.noteFan(eventID, fanID, res, now)
		return w.statusFrom(res, info, now), nil
	}
	return QueueStatus{}, fmt.Errorf("waiting room: join %s: the line did not open", eventID)
}

// Status returns fanID's place in eventID's line without joining: StateNone
// if it never joined (or lost its place). Polling refreshes the presence of a
// waiting fan, so an HTTP-only fan keeps its place by polling. Once on sale,
// it places the pre-queue if nobody has yet. Errors: not_found, unavailable.
func (w *WaitingRoom) Status(ctx context.Context, eventID, fanID string) (QueueStatus, error) {
	if fanID == "" {
		return QueueStatus{State: StateNone}, nil
	}
	info, err := w.eventInfo(ctx, eventID)
	if err != nil {
		return QueueStatus{}, err
	}
	now := w.now()
	res, err := w.touch(ctx, eventID, fanID, "status", now)
	if err != nil {
		return QueueStatus{}, err
	}
	if res.state == touchPre && !now.Before(info.onSaleAt) {
		if err := w.ensureOpen(ctx, eventID); err != nil {
			return QueueStatus{}, err
		}
		if res, err = w.touch(ctx, eventID, fanID, "status", now); err != nil {
			return QueueStatus{}, err
		}
	}
	w.noteFan(eventID, fanID, res, now)
	return w.statusFrom(res, info, now), nil
}

// Admitted returns when fanID's admission to eventID ends. The admission is
// bound to the fan id (the session): it returns a not_admitted *booking.Error
// if this fan was never admitted or its admission has expired, and
// unavailable if Redis cannot be reached. Holds and checkout call it on every
// request.
func (w *WaitingRoom) Admitted(ctx context.Context, eventID, fanID string) (time.Time, error) {
	notAdmitted := booking.NotAdmitted()
	if fanID == "" || !booking.ValidEventID(eventID) {
		return time.Time{}, notAdmitted
	}
	v, err := w.rdb.Get(ctx, queueKeysFor(eventID).admitPrefix+fanID).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, notAdmitted
	}
	if err != nil {
		return time.Time{}, wrUnavailable("check admission", err)
	}
	u, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, notAdmitted
	}
	until := time.UnixMilli(u)
	if !until.After(w.now()) {
		return time.Time{}, notAdmitted
	}
	return until, nil
}

// AdmissionKey is the key admit:{E}:{fan} whose value is the Unix time in
// milliseconds until which fanID is admitted to eventID (the admitter sets
// it). With Admitted, it makes the WaitingRoom the booking.Admission of holds
// and checkout, whose scripts read the key themselves.
func (w *WaitingRoom) AdmissionKey(eventID, fanID string) string {
	return queueKeysFor(eventID).admitPrefix + fanID
}

// SetAdmission changes eventID's admission rate and/or pause flag (nil leaves
// one as it is) and returns the settings now in force. They are stored in
// Redis and every admitter step reads them, so they apply cluster-wide within
// one Tick. Errors: bad_request (rate outside 0..MaxAdmitRate), not_found,
// unavailable.
func (w *WaitingRoom) SetAdmission(ctx context.Context, eventID string, rate *int, paused *bool) (AdmissionSettings, error) {
	if rate != nil && (*rate < 0 || *rate > MaxAdmitRate) {
		return AdmissionSettings{}, booking.Errorf(booking.ECodeBadRequest, "rate must be between 0 and %d", MaxAdmitRate)
	}
	if _, err := w.eventInfo(ctx, eventID); err != nil {
		return AdmissionSettings{}, err
	}
	k := queueKeysFor(eventID)
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if rate != nil {
			p.Set(ctx, k.rate, *rate, 0)
		}
		if paused != nil {
			v := "0"
			if *paused {
				v = "1"
			}
			p.Set(ctx, k.paused, v, 0)
		}
		return nil
	})
	if err != nil {
		return AdmissionSettings{}, wrUnavailable("set admission", err)
	}
	return w.AdmissionSettings(ctx, eventID)
}

// AdmissionSettings returns eventID's admission settings: the staff-set rate
// (WaitingRoomConfig.AdmitRate if none) and pause flag. Errors: unavailable.
func (w *WaitingRoom) AdmissionSettings(ctx context.Context, eventID string) (AdmissionSettings, error) {
	k := queueKeysFor(eventID)
	v, err := w.rdb.MGet(ctx, k.rate, k.paused).Result()
	if err != nil {
		return AdmissionSettings{}, wrUnavailable("read admission settings", err)
	}
	return w.settingsFrom(redisString(v[0]), redisString(v[1])), nil
}

// QueueStats returns eventID's waiting-room figures (for staff) with one
// Redis command. Errors: unavailable.
func (w *WaitingRoom) QueueStats(ctx context.Context, eventID string) (QueueStats, error) {
	k := queueKeysFor(eventID)
	v, err := w.rdb.MGet(ctx, k.seq, k.serving, k.opened, k.precount, k.admitted, k.mrate, k.rate, k.paused).Result()
	if err != nil {
		return QueueStats{}, wrUnavailable("read queue stats", err)
	}
	return QueueStats{
		QueueLength: queueLength(redisInt(v[0]), redisInt(v[1]), v[2] != nil, redisInt(v[3])),
		Admitted:    int(redisInt(v[4])),
		AdmitRate:   redisFloat(v[5]),
		Settings:    w.settingsFrom(redisString(v[6]), redisString(v[7])),
	}, nil
}

func queueLength(seq, serving int64, opened bool, precount int64) int {
	n := seq - serving
	if n < 0 {
		n = 0
	}
	if !opened {
		n += precount
	}
	return int(n)
}
