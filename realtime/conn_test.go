package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"seatmap/booking"
)

// fastHubOpts are hub options for tests: short intervals so tests are quick.
func fastHubOpts() Options {
	return Options{PushInterval: 20 * time.Millisecond, Linger: 200 * time.Millisecond, StreamBlock: 500 * time.Millisecond, HoldTTL: 30 * time.Second}
}

// seatWorkload applies n random holds, releases, expiring holds and sales
// to e's seats that are free now, from workers goroutines, each on its own
// share of the seats so each keeps an exact model of its seats. fans are the
// holders. It may run outside the test's goroutine: failures are returned.
func seatWorkload(e *seatEnv, fans []string, n, workers int) error {
	states, _, err := e.readTruth()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = seatWorker(e, fans, states, n/workers, w, workers)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// seatWorker is one worker of seatWorkload: ops operations on the free seats
// whose catalog position is w modulo workers.
func seatWorker(e *seatEnv, fans []string, states map[string]string, ops, w, workers int) error {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	var free []string
	for i, s := range e.cat.Order {
		if i%workers == w && states[s] == "available" {
			free = append(free, s)
		}
	}
	held := map[string]string{} // seat → fan, long holds only
	take := func() string {
		i := rng.IntN(len(free))
		s := free[i]
		free[i] = free[len(free)-1]
		free = free[:len(free)-1]
		return s
	}
	for op := 0; op < ops; op++ {
		p := rng.Float64()
		var err error
		switch {
		case p < 0.40 && len(free) > 0:
			s, fan := take(), fans[rng.IntN(len(fans))]
			err = e.hold(s, fan, 30*time.Second)
			held[s] = fan
		case p < 0.55 && len(free) > 0:
			// a hold that lapses on its own; the seat leaves the model
			err = e.hold(take(), fans[rng.IntN(len(fans))], time.Duration(50+rng.IntN(250))*time.Millisecond)
		case p < 0.80 && len(held) > 0:
			for s := range held {
				err = e.release(s)
				delete(held, s)
				free = append(free, s)
				break
			}
		case len(held) > 0 || len(free) > 0:
			// a sale: up to three of one fan's held seats, or a free seat
			var seats []string
			fan := fans[rng.IntN(len(fans))]
			for s, f := range held {
				if len(seats) == 0 {
					fan = f
				}
				if f == fan && len(seats) < 3 {
					seats = append(seats, s)
					delete(held, s)
				}
			}
			if len(seats) == 0 {
				seats = append(seats, take())
			}
			err = e.sell(fan, seats, rng.IntN(3) == 0)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// TestFanout_TwoInstancesConvergeOnTruth runs 200 real sockets on two
// instances (each with its own hub and Redis listener) through 500 random
// holds, releases, expiries and sales: every client ends with exactly the
// SQL+Redis truth, its own holds marked mine, and seq never skipping or going
// back.
func TestFanout_TwoInstancesConvergeOnTruth(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 4, 5, 20)
	a := e.newInstance(t, "a", fastHubOpts(), nil)
	b := e.newInstance(t, "b", fastHubOpts(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	fans := make([]string, 60)
	for i := range fans {
		fans[i] = fmt.Sprintf("fan-%d", i)
	}
	var clients []*fanClient
	for i := 0; i < 200; i++ {
		in := a
		if i%2 == 1 {
			in = b
		}
		clients = append(clients, dialFan(t, ctx, in.wsURL(fans[i%len(fans)]), fans[i%len(fans)]))
	}
	for _, c := range clients {
		if err := c.waitFor(ctx, "snapshot", func(c *fanClient) bool { return c.snapshots > 0 }); err != nil {
			t.Fatal(err)
		}
	}

	if err := seatWorkload(e, fans, 500, 4); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ctx, e, clients)

	batches := 0
	for _, c := range clients {
		c.mu.Lock()
		if c.snapshots != 1 {
			t.Errorf("fan %s got %d snapshots, want 1 (no resync)", c.fan, c.snapshots)
		}
		batches += c.batches
		c.mu.Unlock()
	}
	if batches < 200*5 {
		t.Errorf("clients got %d batches in all; the workload should make several each", batches)
	}
	for _, in := range []*hubInstance{a, b} {
		if got := in.resyncs.Load(); got != 1 {
			t.Errorf("instance %s rebuilt %d times, want 1", in.name, got)
		}
		if got := in.slow.Load(); got != 0 {
			t.Errorf("instance %s closed %d slow consumers", in.name, got)
		}
		if in.lagMax.Load() <= 0 {
			t.Errorf("instance %s reported no notification lag", in.name)
		}
		if errs := in.serveErrors(); len(errs) > 0 {
			t.Errorf("instance %s: ServeFan returned %v", in.name, errs)
		}
	}
}

// TestFanout_ResyncAfterListenerKilled kills one instance's Redis pub/sub
// connection in the middle of a workload: the feed resubscribes, rebuilds
// from Redis and SQL, sends every socket a fresh snapshot (seq still
// increasing) and every client ends on the truth.
func TestFanout_ResyncAfterListenerKilled(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 2, 5, 20)
	a := e.newInstance(t, "a", fastHubOpts(), nil)
	b := e.newInstance(t, "b", fastHubOpts(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fans := []string{"f1", "f2", "f3", "f4", "f5"}
	var onA, clients []*fanClient
	for i := 0; i < 30; i++ {
		in := a
		if i >= 20 {
			in = b
		}
		c := dialFan(t, ctx, in.wsURL(fans[i%len(fans)]), fans[i%len(fans)])
		clients = append(clients, c)
		if in == a {
			onA = append(onA, c)
		}
	}
	for _, c := range clients {
		if err := c.waitFor(ctx, "snapshot", func(c *fanClient) bool { return c.snapshots > 0 }); err != nil {
			t.Fatal(err)
		}
	}

	done := make(chan error)
	go func() { done <- seatWorkload(e, fans, 200, 2) }()
	a.killListener(t, e.rdb)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := seatWorkload(e, fans, 100, 2); err != nil {
		t.Fatal(err)
	}

	for _, c := range onA {
		if err := c.waitFor(ctx, "second snapshot", func(c *fanClient) bool { return c.snapshots >= 2 }); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, ctx, e, clients)
	if got := a.resyncs.Load(); got < 2 {
		t.Errorf("instance a rebuilt %d times, want at least 2", got)
	}
	if got := b.resyncs.Load(); got != 1 {
		t.Errorf("instance b rebuilt %d times, want 1", got)
	}
}

// TestFanout_SlowClientClosed floods an event with big batches while one
// socket never reads: once its send queue overflows it is closed as a slow
// consumer at once (its write stuck on the full socket is aborted, long
// before the 30 s write deadline), and the sockets that read get every batch
// (no seq gap) without waiting for it. A hub that let one socket hold up the
// others would stall them for the 30 s write deadline.
func TestFanout_SlowClientClosed(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 2, 20, 50) // 2000 seats: a batch of all of them is ~100 KB
	opts := fastHubOpts()
	opts.SendQueue = 4
	opts.WriteTimeout = 30 * time.Second
	in := e.newInstanceBuffered(t, "a", opts, nil, 64<<10) // kernel buffers: 64 KiB to send, 4 KiB to receive
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	slow := dialUnread(t, ctx, in.wsURL("slow"))
	var fast []*fanClient
	for i := 0; i < 5; i++ {
		fast = append(fast, dialFan(t, ctx, in.wsURL(fmt.Sprintf("fast-%d", i)), fmt.Sprintf("fast-%d", i)))
	}
	for _, c := range fast {
		if err := c.waitFor(ctx, "snapshot", func(c *fanClient) bool { return c.snapshots > 0 }); err != nil {
			t.Fatal(err)
		}
	}

	all := func(state string) func(c *fanClient) bool {
		return func(c *fanClient) bool {
			for _, s := range e.cat.Order {
				if c.states[s] != state {
					return false
				}
			}
			return true
		}
	}
	var worst time.Duration
	flood := time.Now()
	round := 0
	for ; in.slow.Load() == 0; round++ {
		if round == 300 {
			t.Fatalf("the slow socket was not closed after %d rounds", round)
		}
		for _, state := range []string{"held", "available"} {
			e.setAll(t, ctx, state == "held")
			start := time.Now()
			for _, c := range fast {
				if err := c.waitFor(ctx, "all "+state, all(state)); err != nil {
					t.Fatal(err)
				}
			}
			worst = max(worst, time.Since(start))
		}
	}
	closedAfter := time.Since(flood)
	t.Logf("slow socket closed after %d rounds (%v); the slowest batch took %v to reach every reader", round, closedAfter, worst)
	if worst > 10*time.Second {
		t.Errorf("readers waited %v for a batch while the slow socket was stuck", worst)
	}
	if closedAfter >= opts.WriteTimeout {
		t.Errorf("the slow socket was closed after %v, by its write deadline rather than its queue overflowing", closedAfter)
	}

	// After the close, readers still get changes at once.
	start := time.Now()
	e.mustHold(t, e.cat.Order[0], "fast-0", time.Minute)
	for _, c := range fast {
		if err := c.waitFor(ctx, "the last hold", func(c *fanClient) bool { return c.states[e.cat.Order[0]] == "held" }); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("a hold after the close reached every reader in %v", time.Since(start))
	waitConverged(t, ctx, e, fast)

	// The slow socket has been dropped: reading what was buffered ends in an error.
	var err error
	for {
		if _, _, err = slow.Read(ctx); err != nil {
			break
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("the slow socket was never closed: %v", err)
	}
	t.Logf("the slow socket ended with: %v", err)
	if got := in.slow.Load(); got != 1 {
		t.Errorf("SlowConsumerClosed called %d times, want 1", got)
	}
	if errs := in.serveErrors(); len(errs) != 1 || !errors.Is(errs[0], CloseSlowConsumer) {
		t.Errorf("ServeFan returned %v, want one slow-consumer close", errs)
	}
}

// readMsgType reads messages until one of type typ arrives.
func readMsgType(t *testing.T, ctx context.Context, ws *websocket.Conn, typ string) map[string]any {
	t.Helper()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("bad JSON %q", data)
		}
		if m["type"] == typ {
			return m
		}
	}
}

func TestServeFan_ClientFrames(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 1, 5)
	in := e.newInstance(t, "a", fastHubOpts(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, in.wsURL("f1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	readMsgType(t, ctx, ws, "snapshot")

	t.Run("ping gets pong", func(t *testing.T) {
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		readMsgType(t, ctx, ws, "pong")
	})
	t.Run("garbage gets an error and the socket stays", func(t *testing.T) {
		for _, msg := range []string{"garbage", `{"type":"hold","seat":"A-1-1"}`, `[]`} {
			if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			m := readMsgType(t, ctx, ws, "error")
			if m["code"] != "bad_request" || m["message"] == "" {
				t.Errorf("error for %q = %v", msg, m)
			}
		}
		if err := ws.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		readMsgType(t, ctx, ws, "error")
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		readMsgType(t, ctx, ws, "pong")
	})
	t.Run("frame of 4 KiB is accepted", func(t *testing.T) {
		msg := `{"type":"ping","pad":"` + strings.Repeat("x", 4096-len(`{"type":"ping","pad":""}`)) + `"}`
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		readMsgType(t, ctx, ws, "pong")
	})
	t.Run("frame of 8 KiB closes with 1009", func(t *testing.T) {
		if err := ws.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 8192))); err != nil {
			t.Fatal(err)
		}
		for {
			_, _, err := ws.Read(ctx)
			if err == nil {
				continue
			}
			if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
				t.Fatalf("socket ended with %v (status %v), want 1009", err, got)
			}
			break
		}
	})
}

func TestServeFan_ShutdownClosesWith1001(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 1, 5)
	in := e.newInstance(t, "a", fastHubOpts(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := dialSnapshot(t, ctx, in.wsURL("f1"), "f1")
	in.cancel()
	<-c.done
	if got := websocket.CloseStatus(c.readErr); got != websocket.StatusGoingAway {
		t.Fatalf("socket ended with %v, want 1001", c.readErr)
	}
	in.handler.Wait()
	if errs := in.serveErrors(); len(errs) > 0 {
		t.Errorf("ServeFan returned %v on shutdown, want nil", errs)
	}
	if got := in.conns.Load(); got != 0 {
		t.Errorf("%d connections still counted", got)
	}
}

// fakeQueue is a waiting room whose statuses the test sets.
type fakeQueue struct {
	mu       sync.Mutex
	joined   map[string]QueueStatus
	watchers map[string]func(QueueStatus)
	watching chan string
	stopped  chan string
	joinErr  error
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{joined: map[string]QueueStatus{}, watchers: map[string]func(QueueStatus){},
		watching: make(chan string, 10), stopped: make(chan string, 10)}
}

func (q *fakeQueue) Join(_ context.Context, _, fan string) (QueueStatus, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.joinErr != nil {
		return QueueStatus{}, q.joinErr
	}
	return q.joined[fan], nil
}

func (q *fakeQueue) Watch(_, fan string, fn func(QueueStatus)) func() {
	q.mu.Lock()
	q.watchers[fan] = fn
	q.mu.Unlock()
	q.watching <- fan
	var once sync.Once
	return func() { once.Do(func() { q.stopped <- fan }) }
}

func (q *fakeQueue) push(fan string, st QueueStatus) {
	q.mu.Lock()
	fn := q.watchers[fan]
	q.mu.Unlock()
	fn(st)
}

func TestServeFan_WaitingRoom(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 2, 5)
	q := newFakeQueue()
	opts := fastHubOpts()
	opts.QueueInterval = 50 * time.Millisecond
	in := e.newInstance(t, "a", opts, q)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("a waiting fan gets positions, then admitted, snapshot and batches", func(t *testing.T) {
		q.joined["w"] = QueueStatus{State: StateWaiting, Position: 3, Ahead: 2, ETASeconds: 9}
		c := dialFan(t, ctx, in.wsURL("w"), "w")
		if err := c.waitFor(ctx, "queue", func(c *fanClient) bool { return len(c.others) > 0 }); err != nil {
			t.Fatal(err)
		}
		<-q.watching
		q.push("w", QueueStatus{State: StateWaiting, Position: 3, Ahead: 2, ETASeconds: 9}) // unchanged: not sent again
		q.push("w", QueueStatus{State: StateWaiting, Position: 2, Ahead: 1, ETASeconds: 4})
		if err := c.waitFor(ctx, "second queue", func(c *fanClient) bool { return len(c.others) >= 2 }); err != nil {
			t.Fatal(err)
		}
		until := time.Now().Add(10 * time.Minute).UTC().Truncate(time.Second)
		q.push("w", QueueStatus{State: StateAdmitted, Until: until})
		if err := c.waitFor(ctx, "snapshot", func(c *fanClient) bool { return c.snapshots > 0 }); err != nil {
			t.Fatal(err)
		}
		if fan := <-q.stopped; fan != "w" {
			t.Errorf("stopped watching %s", fan)
		}
		e.mustHold(t, e.cat.Order[0], "w", 10*time.Minute)
		if err := c.waitFor(ctx, "mine", func(c *fanClient) bool { return c.mine[e.cat.Order[0]] }); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		want := []string{
			`{"ahead":2,"eta_seconds":9,"position":3,"type":"queue"}`,
			`{"ahead":1,"eta_seconds":4,"position":2,"type":"queue"}`,
			`{"type":"admitted","until":"` + until.Format(time.RFC3339) + `"}`,
		}
		if len(c.others) != len(want) {
			t.Fatalf("got messages %v, want %v", c.others, want)
		}
		for i, m := range c.others {
			got, _ := json.Marshal(m)
			if string(got) != want[i] {
				t.Errorf("message %d = %s, want %s", i, got, want[i])
			}
		}
	})

	t.Run("an admitted fan gets admitted and a snapshot at once", func(t *testing.T) {
		q.joined["a"] = QueueStatus{State: StateAdmitted, Until: time.Now().Add(time.Minute)}
		c := dialSnapshot(t, ctx, in.wsURL("a"), "a")
		if got := c.other("admitted"); len(got) != 1 {
			t.Errorf("got %d admitted messages before the snapshot, want 1", len(got))
		}
	})

	t.Run("an unavailable waiting room closes with 1013", func(t *testing.T) {
		q.mu.Lock()
		q.joinErr = fmt.Errorf("join: %w", booking.ErrUnavailable)
		q.mu.Unlock()
		defer func() { q.mu.Lock(); q.joinErr = nil; q.mu.Unlock() }()
		ws, _, err := websocket.Dial(ctx, in.wsURL("u"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		m := readMsgType(t, ctx, ws, "error")
		if m["code"] != "unavailable" {
			t.Errorf("error = %v", m)
		}
		_, _, err = ws.Read(ctx)
		if got := websocket.CloseStatus(err); got != websocket.StatusTryAgainLater {
			t.Errorf("closed with %v, want 1013", err)
		}
	})
}

// TestServeFan_HoldExpiring: a fan is warned of its holds that lapse within
// a minute — at once for a shorter hold, a minute before for a longer one,
// never for another fan's holds — and a tab that connects later is told too.
func TestServeFan_HoldExpiring(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 2, 5)
	in := e.newInstance(t, "a", fastHubOpts(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mine := dialFan(t, ctx, in.wsURL("me"), "me")
	other := dialFan(t, ctx, in.wsURL("other"), "other")
	for _, c := range []*fanClient{mine, other} {
		if err := c.waitFor(ctx, "snapshot", func(c *fanClient) bool { return c.snapshots > 0 }); err != nil {
			t.Fatal(err)
		}
	}
	short, soon, long := e.cat.Order[0], e.cat.Order[1], e.cat.Order[2]
	start := time.Now()
	e.mustHold(t, short, "me", 30*time.Second)
	e.mustHold(t, soon, "me", 61500*time.Millisecond)
	e.mustHold(t, long, "me", 10*time.Minute)
	warned := func(seat string) func(c *fanClient) bool {
		return func(c *fanClient) bool {
			for _, m := range c.others {
				if m["type"] == "hold_expiring" && m["seat"] == seat {
					return true
				}
			}
			return false
		}
	}
	if err := mine.waitFor(ctx, "warning of the short hold", warned(short)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the short hold was announced after %v", d)
	}
	if err := mine.waitFor(ctx, "warning of the hold ending in 61.5s", warned(soon)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 1400*time.Millisecond || d > 3*time.Second {
		t.Errorf("the 61.5 s hold was announced after %v, want about 1.5 s", d)
	}
	for _, m := range mine.other("hold_expiring") {
		at, err := time.Parse(time.RFC3339, m["expires_at"].(string))
		want := start.Add(30 * time.Second)
		if m["seat"] == soon {
			want = start.Add(61500 * time.Millisecond)
		}
		if err != nil || at.Sub(want) > 2*time.Second || want.Sub(at) > 2*time.Second {
			t.Errorf("hold_expiring %v: expires_at should be about %v", m, want)
		}
	}
	tab := dialFan(t, ctx, in.wsURL("me"), "me")
	if err := tab.waitFor(ctx, "warnings on join", func(c *fanClient) bool { return warned(short)(c) && warned(soon)(c) }); err != nil {
		t.Fatal(err)
	}
	if got := mine.other("hold_expiring"); len(got) != 2 {
		t.Errorf("warnings = %v, want one each for %s and %s", got, short, soon)
	}
	if got := other.other("hold_expiring"); len(got) != 0 {
		t.Errorf("another fan was warned: %v", got)
	}
}

// The waiting room of realtime/queue.go is what the server passes as Queue.
var _ Queue = (*WaitingRoom)(nil)

// TestServeFan_WithWaitingRoom runs fan sockets through the real waiting
// room: paused admission shows queue positions in join order; resuming it
// admits everyone, who then get a snapshot and live seat changes.
func TestServeFan_WithWaitingRoom(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 1, 2, 5)
	wr := NewWaitingRoom(e.rdb, e.store, WaitingRoomConfig{AdmitRate: 0, AdmitTTL: time.Minute,
		Tick: 20 * time.Millisecond, PushEvery: 100 * time.Millisecond, LeaseTTL: time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- wr.Run(runCtx) }()
	defer func() {
		stopRun()
		if err := <-runDone; err != nil {
			t.Errorf("waiting room: %v", err)
		}
	}()
	opts := fastHubOpts()
	opts.QueueInterval = 100 * time.Millisecond
	in := e.newInstance(t, "a", opts, wr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var fans []*fanClient
	for i := 1; i <= 3; i++ {
		c := dialFan(t, ctx, in.wsURL(fmt.Sprintf("wr-%d", i)), fmt.Sprintf("wr-%d", i))
		if err := c.waitFor(ctx, "queue position", func(c *fanClient) bool { return len(c.others) > 0 }); err != nil {
			t.Fatal(err)
		}
		if q := c.other("queue")[0]; q["position"] != float64(i) || q["ahead"] != float64(i-1) {
			t.Errorf("fan %d: first queue message %v, want position %d", i, q, i)
		}
		fans = append(fans, c)
	}
	rate := 1000
	if _, err := wr.SetAdmission(ctx, e.eventID, &rate, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range fans {
		if err := c.waitFor(ctx, "snapshot", func(c *fanClient) bool { return c.snapshots > 0 }); err != nil {
			t.Fatal(err)
		}
		if got := c.other("admitted"); len(got) != 1 {
			t.Errorf("fan %s: %d admitted messages, want 1", c.fan, len(got))
		}
	}
	e.mustHold(t, e.cat.Order[0], "wr-1", 10*time.Minute)
	waitConverged(t, ctx, e, fans)
}

// TestFanout_WriteDeadlineClosesStuckSocket: a socket that stops reading,
// with a send queue too big to overflow, is closed by its write deadline —
// reset, so the client does not wait behind the backlog the server's
// kernel still held (FanParams.Reset).
func TestFanout_WriteDeadlineClosesStuckSocket(t *testing.T) {
	t.Parallel()
	e := mustSeatEnv(t, 2, 20, 50) // 2000 seats: a batch of all of them is ~100 KB
	opts := fastHubOpts()
	opts.SendQueue = 100_000
	opts.WriteTimeout = 300 * time.Millisecond
	in := e.newInstanceBuffered(t, "a", opts, nil, 64<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow := dialUnread(t, ctx, in.wsURL("slow"))
	defer slow.CloseNow()
	for round := 0; in.slow.Load() == 0; round++ {
		if round == 300 {
			t.Fatal("the stuck socket was not closed")
		}
		e.setAll(t, ctx, round%2 == 0)
		time.Sleep(50 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(in.serveErrors()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if errs := in.serveErrors(); len(errs) != 1 || !errors.Is(errs[0], CloseWriteTimeout) {
		t.Errorf("ServeFan returned %v, want one write-timeout close", errs)
	}
	// The client now reads what reached it; then the connection must have
	// been reset, not ended after the rest of the backlog.
	var err error
	for err == nil {
		_, _, err = slow.Read(ctx)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the stuck socket's reads ended with %v, want a connection reset", err)
	}
}
