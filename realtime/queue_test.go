package realtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seatmap/booking"
	"seatmap/internal/testenv"
)

// wrClock is the real clock shifted by an offset the test moves forward.
type wrClock struct{ off atomic.Int64 }

func (c *wrClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *wrClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// mustWRService returns a booking service on this package's test database.
func mustWRService(tb testing.TB) *booking.Service {
	tb.Helper()
	return booking.NewService(testenv.DB(tb), testenv.Redis(tb), nil, booking.Config{}, nil, nil)
}

// mustWREvent creates a one-seat event going on sale at onSaleAt.
func mustWREvent(tb testing.TB, svc *booking.Service, onSaleAt time.Time) booking.Event {
	tb.Helper()
	ev, err := svc.CreateEvent(context.Background(), booking.NewEvent{
		ID: testenv.EventID(tb), Name: "Drop", Venue: "Hall",
		StartsAt: onSaleAt.Add(24 * time.Hour), OnSaleAt: onSaleAt,
		Sections: []booking.NewSection{{Name: "Floor", PriceCents: 1000, Rows: 1, SeatsPerRow: 1}},
	})
	if err != nil {
		tb.Fatalf("create event: %v", err)
	}
	return ev
}

// cmdCounter counts the Redis commands a client sends (pipelines count each
// command).
type cmdCounter struct{ n atomic.Int64 }

func (c *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// wrInstance is one simulated server process: a WaitingRoom with its own
// Redis client and Run loop.
type wrInstance struct {
	*WaitingRoom
	rdb      *redis.Client
	cmds     *cmdCounter
	admitted atomic.Int64
	skipped  atomic.Int64
	ticks    atomic.Int64
	cancel   context.CancelFunc
	done     chan struct{}
}

// newWRInstance returns an instance that is not running yet; now may be nil.
func newWRInstance(tb testing.TB, svc *booking.Service, cfg WaitingRoomConfig, now func() time.Time) *wrInstance {
	tb.Helper()
	rdb := testenv.Redis(tb)
	in := &wrInstance{rdb: rdb, cmds: &cmdCounter{}}
	rdb.AddHook(in.cmds)
	in.WaitingRoom = NewWaitingRoom(rdb, svc, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), now)
	in.Hooks.Admitted = func(n int) { in.admitted.Add(int64(n)) }
	in.Hooks.Skipped = func(n int) { in.skipped.Add(int64(n)) }
	in.Hooks.TickDone = func(time.Duration) { in.ticks.Add(1) }
	return in
}

// start runs the instance's loop until stop or the end of the test.
func (in *wrInstance) start(tb testing.TB) *wrInstance {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel, in.done = cancel, make(chan struct{})
	go func() {
		defer close(in.done)
		if err := in.Run(ctx); err != nil {
			tb.Errorf("run: %v", err)
		}
	}()
	tb.Cleanup(in.stop)
	return in
}

// stop ends the instance's loop and waits for it.
func (in *wrInstance) stop() {
	in.cancel()
	<-in.done
}

// mustStartWRInstances starts n instances sharing one configuration and clock.
func mustStartWRInstances(tb testing.TB, svc *booking.Service, n int, cfg WaitingRoomConfig, now func() time.Time) []*wrInstance {
	tb.Helper()
	out := make([]*wrInstance, n)
	for i := range out {
		out[i] = newWRInstance(tb, svc, cfg, now).start(tb)
	}
	return out
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustJoin(tb testing.TB, w *WaitingRoom, eventID, fanID string) QueueStatus {
	tb.Helper()
	st, err := w.Join(context.Background(), eventID, fanID)
	if err != nil {
		tb.Fatalf("join %s: %v", fanID, err)
	}
	return st
}

func mustStatus(tb testing.TB, w *WaitingRoom, eventID, fanID string) QueueStatus {
	tb.Helper()
	st, err := w.Status(context.Background(), eventID, fanID)
	if err != nil {
		tb.Fatalf("status %s: %v", fanID, err)
	}
	return st
}

func mustSetAdmission(tb testing.TB, w *WaitingRoom, eventID string, rate *int, paused *bool) AdmissionSettings {
	tb.Helper()
	s, err := w.SetAdmission(context.Background(), eventID, rate, paused)
	if err != nil {
		tb.Fatalf("set admission: %v", err)
	}
	return s
}

func ptrTo[T any](v T) *T { return &v }

// statusRecorder collects what a watch pushes.
type statusRecorder struct {
	mu     sync.Mutex
	pushes []recordedStatus
}

type recordedStatus struct {
	at time.Time
	st QueueStatus
}

func (r *statusRecorder) fn(st QueueStatus) {
	r.mu.Lock()
	r.pushes = append(r.pushes, recordedStatus{time.Now(), st})
	r.mu.Unlock()
}

func (r *statusRecorder) all() []recordedStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recordedStatus(nil), r.pushes...)
}

func (r *statusRecorder) last() (QueueStatus, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pushes) == 0 {
		return QueueStatus{}, false
	}
	return r.pushes[len(r.pushes)-1].st, true
}

func fastWRConfig() WaitingRoomConfig {
	return WaitingRoomConfig{AdmitRate: 100, AdmitTTL: time.Minute, Tick: 20 * time.Millisecond,
		PushEvery: 100 * time.Millisecond, LeaseTTL: time.Second}
}

func TestEtaSeconds(t *testing.T) {
	tests := []struct {
		name     string
		position int
		capRate  float64
		s        AdmissionSettings
		want     int
	}{
		{"configured rate before any measurement", 250, 0, AdmissionSettings{Rate: 100}, 3},
		{"measured throughput below the rate wins", 100, 10, AdmissionSettings{Rate: 100}, 10},
		{"stale measurement above a lowered rate is ignored", 100, 500, AdmissionSettings{Rate: 10}, 10},
		{"first in line waits one step", 1, 0, AdmissionSettings{Rate: 500}, 1},
		{"paused is unknown", 5, 100, AdmissionSettings{Rate: 100, Paused: true}, -1},
		{"rate zero is unknown", 5, 0, AdmissionSettings{Rate: 0}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := etaSeconds(tt.position, tt.capRate, tt.s); got != tt.want {
				t.Errorf("etaSeconds(%d, %v, %+v) = %d, want %d", tt.position, tt.capRate, tt.s, got, tt.want)
			}
		})
	}
}

func TestQueueLength(t *testing.T) {
	tests := []struct {
		name                   string
		seq, serving, precount int64
		opened                 bool
		want                   int
	}{
		{"open line counts unserved tickets", 10, 4, 3, true, 6},
		{"closed line counts the pre-queue", 0, 0, 7, false, 7},
		{"served past the end is empty", 3, 5, 0, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := queueLength(tt.seq, tt.serving, tt.opened, tt.precount); got != tt.want {
				t.Errorf("queueLength = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestJoin(t *testing.T) {
	t.Parallel()
	svc := mustWRService(t)
	ev := mustWREvent(t, svc, time.Now().Add(-time.Hour))
	w := newWRInstance(t, svc, fastWRConfig(), nil) // not running: nobody is admitted
	ctx := context.Background()

	t.Run("status before joining is none", func(t *testing.T) {
		if st := mustStatus(t, w.WaitingRoom, ev.ID, "nobody"); st.State != StateNone {
			t.Errorf("state = %q, want none", st.State)
		}
	})
	t.Run("fans get places in join order", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			st := mustJoin(t, w.WaitingRoom, ev.ID, "fan-"+strconv.Itoa(i))
			if st.State != StateWaiting || st.Position != i || st.Ahead != i-1 || st.EntryID == "" || st.PreQueue {
				t.Errorf("join %d = %+v", i, st)
			}
		}
	})
	t.Run("rejoining keeps the place", func(t *testing.T) {
		first := mustStatus(t, w.WaitingRoom, ev.ID, "fan-2")
		again := mustJoin(t, w.WaitingRoom, ev.ID, "fan-2")
		if again != first || again.Position != 2 {
			t.Errorf("rejoin = %+v, want %+v", again, first)
		}
	})
	t.Run("eta uses the configured rate", func(t *testing.T) {
		if st := mustStatus(t, w.WaitingRoom, ev.ID, "fan-3"); st.ETASeconds != 1 {
			t.Errorf("eta = %d, want 1 (3 ahead at 100/s)", st.ETASeconds)
		}
	})
	t.Run("unknown event is not found", func(t *testing.T) {
		_, err := w.Join(ctx, "no-such-event", "fan-1")
		if booking.ErrorCode(err) != booking.ECodeNotFound {
			t.Errorf("err = %v, want not_found", err)
		}
	})
	t.Run("empty fan is a bad request", func(t *testing.T) {
		_, err := w.Join(ctx, ev.ID, "")
		if booking.ErrorCode(err) != booking.ECodeBadRequest {
			t.Errorf("err = %v, want bad_request", err)
		}
	})
	t.Run("rate out of range is a bad request", func(t *testing.T) {
		_, err := w.SetAdmission(ctx, ev.ID, ptrTo(-1), nil)
		if booking.ErrorCode(err) != booking.ECodeBadRequest {
			t.Errorf("err = %v, want bad_request", err)
		}
	})
	t.Run("stats count the line", func(t *testing.T) {
		qs, err := w.QueueStats(ctx, ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		if qs.QueueLength != 3 || qs.Admitted != 0 || qs.Settings != (AdmissionSettings{Rate: 100}) {
			t.Errorf("stats = %+v", qs)
		}
	})
}

func TestAdmitted(t *testing.T) {
	t.Parallel()
	svc := mustWRService(t)
	ctx := context.Background()

	t.Run("none, admitted, another fan, expired by the clock", func(t *testing.T) {
		ev := mustWREvent(t, svc, time.Now().Add(-time.Hour))
		clk := &wrClock{}
		w := newWRInstance(t, svc, fastWRConfig(), clk.Now).start(t)

		if _, err := w.Admitted(ctx, ev.ID, "fan-a"); booking.ErrorCode(err) != booking.ECodeNotAdmitted {
			t.Fatalf("before joining: err = %v, want not_admitted", err)
		}
		joined := mustJoin(t, w.WaitingRoom, ev.ID, "fan-a")
		var until time.Time
		waitUntil(t, 5*time.Second, "admission", func() bool {
			u, err := w.Admitted(ctx, ev.ID, "fan-a")
			until = u
			return err == nil
		})
		if d := time.Until(until); d < 50*time.Second || d > time.Minute {
			t.Errorf("until is %v away, want about AdmitTTL (1m)", d)
		}
		if st := mustStatus(t, w.WaitingRoom, ev.ID, "fan-a"); st.State != StateAdmitted || !st.Until.Equal(until) {
			t.Errorf("status = %+v, want admitted until %v", st, until)
		}
		if _, err := w.Admitted(ctx, ev.ID, "fan-b"); booking.ErrorCode(err) != booking.ECodeNotAdmitted {
			t.Errorf("another fan: err = %v, want not_admitted", err)
		}
		clk.Advance(time.Minute + time.Second)
		if _, err := w.Admitted(ctx, ev.ID, "fan-a"); booking.ErrorCode(err) != booking.ECodeNotAdmitted {
			t.Errorf("expired: err = %v, want not_admitted", err)
		}
		if st := mustStatus(t, w.WaitingRoom, ev.ID, "fan-a"); st.State != StateNone {
			t.Errorf("expired status = %+v, want none", st)
		}
		again := mustJoin(t, w.WaitingRoom, ev.ID, "fan-a")
		if again.State == StateNone || again.EntryID != joined.EntryID {
			t.Errorf("rejoin after expiry = %+v, want a new place with entry %s", again, joined.EntryID)
		}
	})

	t.Run("expired in redis after a short admit ttl", func(t *testing.T) {
		ev := mustWREvent(t, svc, time.Now().Add(-time.Hour))
		cfg := fastWRConfig()
		cfg.AdmitTTL = 300 * time.Millisecond
		clk := &wrClock{}
		w := newWRInstance(t, svc, cfg, clk.Now).start(t)
		mustJoin(t, w.WaitingRoom, ev.ID, "fan-a")
		waitUntil(t, 5*time.Second, "admission", func() bool {
			_, err := w.Admitted(ctx, ev.ID, "fan-a")
			return err == nil
		})
		// Turn the clock back so only Redis's own expiry can end the admission.
		clk.Advance(-time.Hour)
		if _, err := w.Admitted(ctx, ev.ID, "fan-a"); err != nil {
			t.Fatalf("admitted by the clock: %v", err)
		}
		waitUntil(t, 5*time.Second, "expiry", func() bool {
			_, err := w.Admitted(ctx, ev.ID, "fan-a")
			return booking.ErrorCode(err) == booking.ECodeNotAdmitted
		})
		if n, err := w.rdb.Exists(ctx, queueKeysFor(ev.ID).admitPrefix+"fan-a").Result(); err != nil || n != 0 {
			t.Errorf("admit key still exists (%d, %v)", n, err)
		}
	})
}

func TestWatchPushesPositions(t *testing.T) {
	t.Parallel()
	svc := mustWRService(t)
	ev := mustWREvent(t, svc, time.Now().Add(-time.Hour))
	cfg := fastWRConfig()
	cfg.AdmitRate = 25
	cfg.PushEvery = 200 * time.Millisecond
	insts := mustStartWRInstances(t, svc, 2, cfg, nil)
	joiner, watcher := insts[0], insts[1]
	var pushed atomic.Int64
	watcher.Hooks.PositionsPushed = func(n int) { pushed.Add(int64(n)) }

	mustSetAdmission(t, joiner.WaitingRoom, ev.ID, nil, ptrTo(true))
	const fans = 40
	recs := make([]*statusRecorder, fans)
	for i := range recs {
		fan := fmt.Sprintf("fan-%02d", i)
		mustJoin(t, joiner.WaitingRoom, ev.ID, fan)
		recs[i] = &statusRecorder{}
		stop := watcher.Watch(ev.ID, fan, recs[i].fn)
		t.Cleanup(stop)
	}
	waitUntil(t, 5*time.Second, "first pushes", func() bool {
		for _, r := range recs {
			if _, ok := r.last(); !ok {
				return false
			}
		}
		return true
	})
	for i, r := range recs {
		st, _ := r.last()
		if st.State != StateWaiting || st.Position != i+1 || st.ETASeconds != -1 {
			t.Fatalf("fan %d first push = %+v, want waiting at %d with unknown eta (paused)", i, st, i+1)
		}
	}

	mustSetAdmission(t, watcher.WaitingRoom, ev.ID, nil, ptrTo(false))
	waitUntil(t, 10*time.Second, "every watched fan admitted", func() bool {
		for _, r := range recs {
			if st, _ := r.last(); st.State != StateAdmitted {
				return false
			}
		}
		return true
	})

	total := 0
	for i, r := range recs {
		all := r.all()
		total += len(all)
		for j := 1; j < len(all); j++ {
			prev, cur := all[j-1], all[j]
			if prev.st.State == StateAdmitted {
				t.Errorf("fan %d: push after admission: %+v", i, cur.st)
			}
			if cur.st.State == StateWaiting && cur.st.Position > prev.st.Position {
				t.Errorf("fan %d: position went up from %d to %d", i, prev.st.Position, cur.st.Position)
			}
			if cur.st.State == StateWaiting && cur.at.Sub(prev.at) < cfg.PushEvery-20*time.Millisecond {
				t.Errorf("fan %d: pushes %v apart, want at least %v", i, cur.at.Sub(prev.at), cfg.PushEvery)
			}
		}
		if i >= 10 && len(all) < 3 {
			t.Errorf("fan %d: %d pushes, want position updates while the line moved", i, len(all))
		}
	}
	if got := pushed.Load(); got != int64(total) {
		t.Errorf("PositionsPushed reported %d, watchers received %d", got, total)
	}
}

func TestTickCommandsDoNotGrowWithLocalFans(t *testing.T) {
	t.Parallel()
	svc := mustWRService(t)
	perTick := func(t *testing.T, fans int) float64 {
		ev := mustWREvent(t, svc, time.Now().Add(-time.Hour))
		cfg := fastWRConfig()
		cfg.AdmitRate = 0 // nobody admitted: the same work every tick
		in := newWRInstance(t, svc, cfg, nil)
		var got atomic.Int64
		for i := 0; i < fans; i++ {
			fan := "fan-" + strconv.Itoa(i)
			mustJoin(t, in.WaitingRoom, ev.ID, fan)
			t.Cleanup(in.Watch(ev.ID, fan, func(QueueStatus) { got.Add(1) }))
		}
		in.start(t)
		waitUntil(t, 10*time.Second, "first pushes", func() bool { return got.Load() >= int64(fans) })
		c0, t0 := in.cmds.n.Load(), in.ticks.Load()
		waitUntil(t, 10*time.Second, "50 ticks", func() bool { return in.ticks.Load() >= t0+50 })
		c1, t1 := in.cmds.n.Load(), in.ticks.Load()
		return float64(c1-c0) / float64(t1-t0)
	}
	few := perTick(t, 10)
	many := perTick(t, 1000)
	t.Logf("redis commands per tick: %.2f with 10 watched fans, %.2f with 1000", few, many)
	if few > 3 {
		t.Errorf("%.2f commands per tick with 10 fans, want at most 3", few)
	}
	if many > few+0.5 {
		t.Errorf("%.2f commands per tick with 1000 fans vs %.2f with 10: the tick costs grow with local fans", many, few)
	}
}

func TestLeaversAreSkipped(t *testing.T) {
	t.Parallel()
	svc := mustWRService(t)
	ev := mustWREvent(t, svc, time.Now().Add(-time.Hour))
	ctx := context.Background()
	clk := &wrClock{}
	cfg := fastWRConfig()
	cfg.LeaveGrace = 2 * time.Second
	insts := mustStartWRInstances(t, svc, 2, cfg, clk.Now)
	sockets, api := insts[0], insts[1]
	mustSetAdmission(t, api.WaitingRoom, ev.ID, nil, ptrTo(true))

	// Line: A (socket, leaves), D (HTTP, never polls again), B (HTTP, comes
	// back within the grace), C (socket, stays).
	entryA := mustJoin(t, api.WaitingRoom, ev.ID, "A").EntryID
	mustJoin(t, api.WaitingRoom, ev.ID, "D")
	mustJoin(t, api.WaitingRoom, ev.ID, "B")
	mustJoin(t, api.WaitingRoom, ev.ID, "C")

	recA, recC := &statusRecorder{}, &statusRecorder{}
	stopA := sockets.Watch(ev.ID, "A", recA.fn)
	t.Cleanup(sockets.Watch(ev.ID, "C", recC.fn))
	waitUntil(t, 5*time.Second, "first pushes", func() bool {
		_, a := recA.last()
		_, c := recC.last()
		return a && c
	})
	stopA()
	waitUntil(t, 5*time.Second, "A's departure stamped", func() bool {
		sockets.mu.Lock()
		defer sockets.mu.Unlock()
		return len(sockets.rooms[ev.ID].departed) == 0
	})

	clk.Advance(3 * time.Second) // A and D are now unseen for longer than the grace
	back := unixMS(clk.Now())
	if st := mustStatus(t, api.WaitingRoom, ev.ID, "B"); st.State != StateWaiting || st.Position != 3 {
		t.Fatalf("B back within the grace: %+v, want waiting at 3", st)
	}
	waitUntil(t, 5*time.Second, "C's presence refreshed by its socket", func() bool {
		s, err := api.rdb.ZScore(ctx, queueKeysFor(ev.ID).presence, "C").Result()
		return err == nil && int64(s) >= back
	})

	mustSetAdmission(t, api.WaitingRoom, ev.ID, nil, ptrTo(false))
	waitUntil(t, 5*time.Second, "C admitted", func() bool {
		st, _ := recC.last()
		return st.State == StateAdmitted
	})
	if _, err := api.Admitted(ctx, ev.ID, "B"); err != nil {
		t.Errorf("B kept the place: Admitted = %v", err)
	}
	for _, fan := range []string{"A", "D"} {
		if _, err := api.Admitted(ctx, ev.ID, fan); booking.ErrorCode(err) != booking.ECodeNotAdmitted {
			t.Errorf("%s left: Admitted err = %v, want not_admitted", fan, err)
		}
		if st := mustStatus(t, api.WaitingRoom, ev.ID, fan); st.State != StateNone {
			t.Errorf("%s left: status %+v, want none", fan, st)
		}
	}
	if got := sockets.skipped.Load() + api.skipped.Load(); got != 2 {
		t.Errorf("skipped %d fans, want 2", got)
	}
	if st := mustJoin(t, api.WaitingRoom, ev.ID, "A"); st.State == StateNone || st.EntryID != entryA {
		t.Errorf("A rejoining after being skipped: %+v, want a new place with entry %s", st, entryA)
	}
	for _, p := range recC.all() {
		if p.st.State == StateWaiting && p.st.Position > 4 {
			t.Errorf("C pushed position %d, want at most 4", p.st.Position)
		}
	}
}
