package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"seatmap/booking"
	"seatmap/internal/testenv"
)

// booking.Service is the SeatStore the server passes to NewHub.
var _ SeatStore = (*booking.Service)(nil)

// seatEnv is one test's event: its seats in SQL, its keys in Redis.
type seatEnv struct {
	db      *pgxpool.Pool
	rdb     *redis.Client // the test's own writes
	store   *booking.Service
	eventID string
	cat     *booking.Catalog
}

// mustSeatEnv creates an event of sections × rows × perRow seats and
// removes its Redis keys when tb ends.
func mustSeatEnv(tb testing.TB, sections, rows, perRow int) *seatEnv {
	tb.Helper()
	db := testenv.DB(tb)
	rdb := testenv.Redis(tb)
	svc := booking.NewService(db, rdb, nil, booking.Config{}, nil, nil)
	id := testenv.EventID(tb)
	ne := booking.NewEvent{ID: id, Name: "Test " + id, Venue: "Hall", StartsAt: time.Now().Add(24 * time.Hour), OnSaleAt: time.Now().Add(-time.Hour)}
	for i := 0; i < sections; i++ {
		ne.Sections = append(ne.Sections, booking.NewSection{Name: "S" + strconv.Itoa(i), PriceCents: 1000, Rows: rows, SeatsPerRow: perRow})
	}
	ctx := context.Background()
	if _, err := svc.CreateEvent(ctx, ne); err != nil {
		tb.Fatalf("create event: %v", err)
	}
	cat, err := svc.Catalog(ctx, id)
	if err != nil {
		tb.Fatalf("catalog: %v", err)
	}
	e := &seatEnv{db: db, rdb: rdb, store: svc, eventID: id, cat: cat}
	tb.Cleanup(func() {
		ctx := context.Background()
		var keys []string
		iter := rdb.Scan(ctx, 0, "*{"+id+"}*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
	return e
}

func (e *seatEnv) holdKey(seat string) string { return "hold:{" + e.eventID + "}:" + seat }

// setAll holds every seat of the event for fan "flood" (or releases them
// all) in one pipeline: one batch with every seat in it.
func (e *seatEnv) setAll(tb testing.TB, ctx context.Context, held bool) {
	tb.Helper()
	pipe := e.rdb.Pipeline()
	for _, s := range e.cat.Order {
		if held {
			pipe.Set(ctx, e.holdKey(s), "flood|0", time.Minute)
		} else {
			pipe.Del(ctx, e.holdKey(s))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		tb.Fatal(err)
	}
}

// hold writes fan's hold on seat as booking does: fan|version, PX ttl.
func (e *seatEnv) hold(seat, fan string, ttl time.Duration) error {
	return e.rdb.Set(context.Background(), e.holdKey(seat), fan+"|0", ttl).Err()
}

func (e *seatEnv) mustHold(tb testing.TB, seat, fan string, ttl time.Duration) {
	tb.Helper()
	if err := e.hold(seat, fan, ttl); err != nil {
		tb.Fatalf("hold %s: %v", seat, err)
	}
}

// release deletes the hold on seat.
func (e *seatEnv) release(seat string) error {
	return e.rdb.Del(context.Background(), e.holdKey(seat)).Err()
}

// mustSell sells seats to fan; see sell.
func (e *seatEnv) mustSell(tb testing.TB, fan string, seats []string, dup bool) {
	tb.Helper()
	if err := e.sell(fan, seats, dup); err != nil {
		tb.Fatal(err)
	}
}

// sell sells seats to fan the way checkout and the outbox relay do: one SQL
// transaction (order, seats sold with a version bump, outbox row), then the
// sold set, the holds' deletion and the stream entry. With dup the relay
// publishes the outbox row twice.
func (e *seatEnv) sell(fan string, seats []string, dup bool) error {
	ctx := context.Background()
	orderID := randomUUID()
	var outboxID int64
	payload, _ := json.Marshal(map[string]any{"order_id": orderID, "seats": seats, "fan": fan})
	err := pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO orders (event_id, id, session_id, email, status, total_cents, checkout_key)
			VALUES ($1, $2, $3, 'fan@example.com', 'confirmed', 0, $4)`, e.eventID, orderID, fan, orderID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE seats SET status = 'sold', order_id = $3, version = version + 1
			WHERE event_id = $1 AND id = ANY($2) AND status = 'available'`, e.eventID, seats, orderID)
		if err != nil {
			return err
		}
		if int(tag.RowsAffected()) != len(seats) {
			return fmt.Errorf("sold %d of %d seats", tag.RowsAffected(), len(seats))
		}
		return tx.QueryRow(ctx, `INSERT INTO outbox (event_id, kind, payload) VALUES ($1, 'seats_sold', $2) RETURNING id`,
			e.eventID, payload).Scan(&outboxID)
	})
	if err != nil {
		return fmt.Errorf("sell %v: %w", seats, err)
	}
	seatsJSON, _ := json.Marshal(seats)
	pipe := e.rdb.TxPipeline()
	members := make([]any, len(seats))
	for i, s := range seats {
		members[i] = s
	}
	pipe.SAdd(ctx, "sold:{"+e.eventID+"}", members...)
	for _, s := range seats {
		pipe.Del(ctx, e.holdKey(s))
	}
	entry := map[string]any{"outbox_id": strconv.FormatInt(outboxID, 10), "kind": "seats_sold", "seats": string(seatsJSON), "order_id": orderID, "fan": fan}
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: "stream:{" + e.eventID + "}", Values: entry})
	if dup {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: "stream:{" + e.eventID + "}", Values: entry})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("publish sale: %w", err)
	}
	return nil
}

// truth reads the event's real state: SQL sold seats, then Redis holds.
// Reading a hold key that has expired also makes Redis expire it (and
// notify), so repeated calls converge on the settled state.
func (e *seatEnv) truth(tb testing.TB) (states map[string]string, holders map[string]string) {
	tb.Helper()
	states, holders, err := e.readTruth()
	if err != nil {
		tb.Fatal(err)
	}
	return states, holders
}

func (e *seatEnv) readTruth() (states map[string]string, holders map[string]string, err error) {
	ctx := context.Background()
	sold, err := e.store.SoldSeats(ctx, e.eventID)
	if err != nil {
		return nil, nil, fmt.Errorf("sold seats: %w", err)
	}
	states = make(map[string]string, len(e.cat.Order))
	holders = make(map[string]string)
	keys := make([]string, len(e.cat.Order))
	for i, s := range e.cat.Order {
		keys[i] = e.holdKey(s)
		states[s] = "available"
	}
	vals, err := e.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("mget holds: %w", err)
	}
	for i, v := range vals {
		if s, ok := v.(string); ok {
			states[e.cat.Order[i]] = "held"
			holders[e.cat.Order[i]] = s[:strings.LastIndexByte(s, '|')]
		}
	}
	for _, s := range sold {
		states[s] = "sold"
		delete(holders, s)
	}
	return states, holders, nil
}

func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// hubInstance is one `seatmap serve` as far as the hub goes: its own Redis
// client (named, so a test can find its pub/sub connection), hub and
// httptest server serving fan sockets at /ws?fan=ID.
type hubInstance struct {
	name    string
	rdb     *redis.Client
	hub     *Hub
	srv     *httptest.Server
	cancel  context.CancelFunc
	handler sync.WaitGroup

	resyncs  atomic.Int64
	deferred atomic.Int64
	slow     atomic.Int64
	sent     atomic.Int64
	conns    atomic.Int64
	lagMax   atomic.Int64

	mu     sync.Mutex
	errors []error // what ServeFan returned
}

// newInstance starts an instance on e's event. opts.Hooks is replaced by
// counters; queue may be nil.
func (e *seatEnv) newInstance(tb testing.TB, name string, opts Options, queue Queue) *hubInstance {
	tb.Helper()
	return e.newInstanceBuffered(tb, name, opts, queue, 0)
}

// newInstanceBuffered is newInstance with the kernel send buffer of every
// accepted socket set to sndbuf bytes (0: the system's autotuning), so a
// test can fill a socket that is not read without writing megabytes.
func (e *seatEnv) newInstanceBuffered(tb testing.TB, name string, opts Options, queue Queue, sndbuf int) *hubInstance {
	tb.Helper()
	ropt, err := redis.ParseURL(testenv.RedisURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	ropt.ClientName = "rt-" + e.eventID + "-" + name
	in := &hubInstance{name: name, rdb: redis.NewClient(ropt)}
	opts.Hooks = Hooks{
		Connections:        func(d int) { in.conns.Add(int64(d)) },
		MessagesSent:       func(n int) { in.sent.Add(int64(n)) },
		SlowConsumerClosed: func() { in.slow.Add(1) },
		Resync:             func() { in.resyncs.Add(1) },
		BatchDeferred:      func() { in.deferred.Add(1) },
		NotificationLag: func(d time.Duration) {
			for {
				cur := in.lagMax.Load()
				if int64(d) <= cur || in.lagMax.CompareAndSwap(cur, int64(d)) {
					return
				}
			}
		},
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	in.hub = NewHub(in.rdb, e.store, opts)
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	in.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.handler.Add(1)
		defer in.handler.Done()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		// As the web package does: a dropped slow consumer's connection is reset.
		tc, _ := r.Context().Value(tcpConnKey{}).(*net.TCPConn)
		reset := func() {
			if tc != nil {
				tc.SetLinger(0)
			}
		}
		err = in.hub.ServeFan(ctx, c, FanParams{EventID: e.eventID, FanID: r.URL.Query().Get("fan"), Queue: queue, Reset: reset})
		if err != nil {
			in.mu.Lock()
			in.errors = append(in.errors, err)
			in.mu.Unlock()
		}
	}))
	in.srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, tcpConnKey{}, c)
	}
	if sndbuf > 0 {
		in.srv.Listener = sndbufListener{in.srv.Listener, sndbuf}
	}
	in.srv.Start()
	tb.Cleanup(in.close)
	return in
}

// tcpConnKey is the request context key of an instance's accepted
// connection.
type tcpConnKey struct{}

// sndbufListener sets the send buffer of every connection it accepts.
type sndbufListener struct {
	net.Listener
	size int
}

func (l sndbufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(l.size)
	}
	return c, err
}

// dialUnread opens a socket that is never read, with a small receive
// buffer, as a fan whose network or tab has stalled.
func dialUnread(tb testing.TB, ctx context.Context, url string) *websocket.Conn {
	tb.Helper()
	var dialer net.Dialer
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(4096)
		}
		return c, err
	}}}
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		tb.Fatalf("dial %s: %v", url, err)
	}
	ws.SetReadLimit(-1)
	tb.Cleanup(func() { ws.CloseNow() })
	return ws
}

// close shuts the instance down as the server does: sockets first (1001),
// then the hub, the HTTP server and the Redis client.
func (in *hubInstance) close() {
	in.cancel()
	in.handler.Wait()
	in.hub.Close()
	in.srv.Close()
	in.rdb.Close()
}

func (in *hubInstance) wsURL(fan string) string {
	return "ws" + strings.TrimPrefix(in.srv.URL, "http") + "/ws?fan=" + fan
}

// serveErrors returns what ServeFan calls have returned so far.
func (in *hubInstance) serveErrors() []error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]error(nil), in.errors...)
}

// killListener kills the instance's Redis pub/sub connection (found by its
// client name) as a network failure or a Redis failover would.
func (in *hubInstance) killListener(tb testing.TB, admin *redis.Client) {
	tb.Helper()
	ctx := context.Background()
	list, err := admin.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		tb.Fatalf("client list: %v", err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		var id, name string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(f, "name="); ok {
				name = v
			}
		}
		if name == in.rdb.Options().ClientName && id != "" {
			if err := admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				tb.Fatalf("client kill: %v", err)
			}
			killed++
		}
	}
	if killed != 1 {
		tb.Fatalf("killed %d pub/sub connections named %s, want 1", killed, in.rdb.Options().ClientName)
	}
}

// fanClient is a test's fan socket: it reads every message, keeps the map
// the messages describe and checks that seq strictly increases by one.
type fanClient struct {
	fan string
	ws  *websocket.Conn

	mu        sync.Mutex
	states    map[string]string
	mine      map[string]bool
	seq       uint64
	snapshots int
	batches   int
	seqErr    error
	others    []map[string]any // every message but snapshot and seats
	arrivals  map[string]time.Time
	readErr   error

	update chan struct{} // cap 1: something changed
	done   chan struct{} // closed when reading ends
}

// wireMsg is any server message.
type wireMsg struct {
	Type    string            `json:"type"`
	Seq     uint64            `json:"seq"`
	Seats   map[string]string `json:"seats"`
	Mine    json.RawMessage   `json:"mine"`
	Changes []struct {
		Seat  string `json:"seat"`
		State string `json:"state"`
		Mine  bool   `json:"mine"`
	} `json:"changes"`
}

// dialFan connects a fan to url and starts reading.
func dialFan(tb testing.TB, ctx context.Context, url, fan string) *fanClient {
	tb.Helper()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		tb.Fatalf("dial %s: %v", url, err)
	}
	ws.SetReadLimit(-1)
	c := &fanClient{fan: fan, ws: ws, states: map[string]string{}, mine: map[string]bool{},
		arrivals: map[string]time.Time{}, update: make(chan struct{}, 1), done: make(chan struct{})}
	go c.read()
	tb.Cleanup(func() { ws.CloseNow(); <-c.done })
	return c
}

// dialSnapshot connects a fan to url and waits for its first snapshot.
func dialSnapshot(tb testing.TB, ctx context.Context, url, fan string) *fanClient {
	tb.Helper()
	c := dialFan(tb, ctx, url, fan)
	if err := c.waitFor(ctx, "snapshot", func(c *fanClient) bool { return c.snapshots > 0 }); err != nil {
		tb.Fatal(err)
	}
	return c
}

func (c *fanClient) read() {
	defer close(c.done)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			c.signal()
			return
		}
		c.handle(data)
		c.signal()
	}
}

func (c *fanClient) signal() {
	select {
	case c.update <- struct{}{}:
	default:
	}
}

func (c *fanClient) handle(data []byte) {
	var m wireMsg
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := json.Unmarshal(data, &m); err != nil {
		c.seqErr = fmt.Errorf("bad JSON %q: %v", data, err)
		return
	}
	switch m.Type {
	case "snapshot", "seats":
		if c.seq != 0 && m.Seq != c.seq+1 && c.seqErr == nil {
			c.seqErr = fmt.Errorf("fan %s: %s seq %d after %d", c.fan, m.Type, m.Seq, c.seq)
		}
		if m.Seq <= c.seq && c.seqErr == nil {
			c.seqErr = fmt.Errorf("fan %s: seq went from %d to %d", c.fan, c.seq, m.Seq)
		}
		c.seq = m.Seq
	}
	switch m.Type {
	case "snapshot":
		c.snapshots++
		c.states = m.Seats
		var mine []string
		if err := json.Unmarshal(m.Mine, &mine); err != nil {
			c.seqErr = fmt.Errorf("snapshot mine %s: %v", m.Mine, err)
		}
		c.mine = map[string]bool{}
		for _, s := range mine {
			c.mine[s] = true
		}
		for s, st := range m.Seats {
			c.noteArrival(s, st, now)
		}
	case "seats":
		c.batches++
		for _, ch := range m.Changes {
			c.states[ch.Seat] = ch.State
			if ch.Mine {
				c.mine[ch.Seat] = true
			} else {
				delete(c.mine, ch.Seat)
			}
			c.noteArrival(ch.Seat, ch.State, now)
		}
	default:
		var any map[string]any
		json.Unmarshal(data, &any)
		c.others = append(c.others, any)
	}
}

// noteArrival remembers when seat was first seen in state st.
func (c *fanClient) noteArrival(seat, st string, now time.Time) {
	k := seat + "/" + st
	if _, ok := c.arrivals[k]; !ok {
		c.arrivals[k] = now
	}
}

// waitFor waits until cond holds (checked under the client's lock after
// every message) or ctx ends.
func (c *fanClient) waitFor(ctx context.Context, what string, cond func(c *fanClient) bool) error {
	for {
		c.mu.Lock()
		ok := cond(c)
		readErr := c.readErr
		c.mu.Unlock()
		if ok {
			return nil
		}
		if readErr != nil {
			return fmt.Errorf("fan %s: waiting for %s: socket ended: %w", c.fan, what, readErr)
		}
		select {
		case <-c.update:
		case <-ctx.Done():
			return fmt.Errorf("fan %s: waiting for %s: %w", c.fan, what, ctx.Err())
		}
	}
}

// other returns the messages of type typ received so far.
func (c *fanClient) other(typ string) []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, m := range c.others {
		if m["type"] == typ {
			out = append(out, m)
		}
	}
	return out
}

// matches reports the first difference between the client's map and the
// truth, or "" if there is none. The caller holds c.mu.
func (c *fanClient) diff(states, holders map[string]string) string {
	if c.seqErr != nil {
		return c.seqErr.Error()
	}
	if len(c.states) != len(states) {
		return fmt.Sprintf("fan %s has %d seats, want %d", c.fan, len(c.states), len(states))
	}
	for s, want := range states {
		if got := c.states[s]; got != want {
			return fmt.Sprintf("fan %s sees %s %s, truth %s", c.fan, s, got, want)
		}
		if mine := holders[s] == c.fan; c.mine[s] != mine {
			return fmt.Sprintf("fan %s: %s mine=%v, truth holder %q", c.fan, s, c.mine[s], holders[s])
		}
	}
	return ""
}

// waitConverged waits until every client shows the truth, re-reading the
// truth whenever a client changes (and at least every 200ms: reading it is
// what makes Redis expire lapsed holds it has not reached yet).
func waitConverged(tb testing.TB, ctx context.Context, e *seatEnv, clients []*fanClient) {
	tb.Helper()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		states, holders := e.truth(tb)
		last = ""
		for _, c := range clients {
			c.mu.Lock()
			d := c.diff(states, holders)
			err := c.readErr
			c.mu.Unlock()
			if err != nil {
				tb.Fatalf("fan %s socket ended: %v", c.fan, err)
			}
			if d != "" {
				last = d
				break
			}
		}
		if last == "" {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("clients did not converge on the truth: %s", last)
		case <-tick.C:
		case <-clients[0].update:
		}
	}
}

// anyErrorIs reports whether any of errs is target.
func anyErrorIs(errs []error, target error) bool {
	for _, err := range errs {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
