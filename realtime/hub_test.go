package realtime

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"seatmap/booking"
)

// newTestCatalog is an in-memory catalog of n seats named S0, S1, ...
func newTestCatalog(n int) *booking.Catalog {
	c := &booking.Catalog{EventID: "ev", Seats: make(map[string]booking.CatalogSeat, n)}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("S%d", i)
		c.Order = append(c.Order, id)
		c.Seats[id] = booking.CatalogSeat{SectionID: "A", Number: i + 1}
	}
	return c
}

// newTestRoom is a room with a ready seat map and no feed, for in-process tests.
func newTestRoom(seats int, opts Options) *room {
	h := &Hub{opts: opts.withDefaults(nil)}
	r := newRoom(h, "ev")
	r.seats = newSeatMap("ev", newTestCatalog(seats), 0)
	return r
}

// applyBatch applies changes to r's map and fans them out, as the feed does.
func applyBatch(r *room, changes ...Change) *Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := &Batch{EventID: r.eventID, Catalog: r.seats.catalog}
	for _, c := range changes {
		i, _ := r.seats.lookup(c.Seat)
		if changed, _ := r.seats.set(i, c.State, c.Holder, time.Time{}); changed {
			b.Changes = append(b.Changes, c)
		}
	}
	r.seats.seq++
	b.Seq = r.seats.seq
	r.publishBatchLocked(b)
	return b
}

// drain returns every frame queued for c.
func drainFrames(c *conn) []frame {
	var out []frame
	for {
		select {
		case f := <-c.send:
			out = append(out, f)
		default:
			return out
		}
	}
}

func TestRoom_BatchSharedByAllButTheHolder(t *testing.T) {
	r := newTestRoom(10, Options{})
	alice1, alice2 := newConn("alice", JSONEncoder{}, 8), newConn("alice", JSONEncoder{}, 8)
	bob, carol := newConn("bob", JSONEncoder{}, 8), newConn("carol", JSONEncoder{}, 8)
	for _, c := range []*conn{alice1, alice2, bob, carol} {
		r.add(c)
		if got := drainFrames(c); len(got) != 1 || got[0].seq != 0 || got[0].tail == nil {
			t.Fatalf("join frames = %v, want the snapshot at seq 0", got)
		}
	}
	applyBatch(r, Change{Seat: "S1", State: Held, Holder: "alice"}, Change{Seat: "S2", State: Held, Holder: "zed"})
	fa1, fa2, fb, fc := drainFrames(alice1), drainFrames(alice2), drainFrames(bob), drainFrames(carol)
	if len(fa1) != 1 || len(fa2) != 1 || len(fb) != 1 || len(fc) != 1 {
		t.Fatalf("frames: %d %d %d %d, want one each", len(fa1), len(fa2), len(fb), len(fc))
	}
	if &fb[0].body[0] != &fc[0].body[0] {
		t.Error("bob and carol got separately encoded batches; the batch should be encoded once")
	}
	if &fa1[0].body[0] != &fa2[0].body[0] {
		t.Error("alice's two tabs got separately encoded batches")
	}
	want := `{"type":"seats","seq":1,"changes":[{"seat":"S1","state":"held","mine":true},{"seat":"S2","state":"held","mine":false}]}`
	if string(fa1[0].body) != want {
		t.Errorf("alice got %s\nwant %s", fa1[0].body, want)
	}
	want = `{"type":"seats","seq":1,"changes":[{"seat":"S1","state":"held","mine":false},{"seat":"S2","state":"held","mine":false}]}`
	if string(fb[0].body) != want {
		t.Errorf("bob got %s\nwant %s", fb[0].body, want)
	}

	// alice's next batch, about others only, is the shared one again
	applyBatch(r, Change{Seat: "S3", State: Sold})
	if a, b := drainFrames(alice1), drainFrames(bob); &a[0].body[0] != &b[0].body[0] {
		t.Error("a batch not involving alice was encoded for her")
	}

	// A new tab of alice gets her holds as mine in its snapshot.
	tab := newConn("alice", JSONEncoder{}, 8)
	r.add(tab)
	var snap struct {
		Seq   uint64
		Seats map[string]string
		Mine  []string
	}
	f := drainFrames(tab)[0]
	if err := json.Unmarshal(append(append([]byte{}, f.body...), f.tail...), &snap); err != nil {
		t.Fatal(err)
	}
	if snap.Seq != 2 || snap.Seats["S1"] != "held" || snap.Seats["S3"] != "sold" || len(snap.Mine) != 1 || snap.Mine[0] != "S1" {
		t.Errorf("snapshot = %+v", snap)
	}
}

func TestRoom_OverflowKicksOnlyThatConnection(t *testing.T) {
	r := newTestRoom(10, Options{})
	slow, fast := newConn("slow", JSONEncoder{}, 3), newConn("fast", JSONEncoder{}, 3)
	r.add(slow)
	r.add(fast)
	for i := 0; i < 5; i++ {
		applyBatch(r, Change{Seat: fmt.Sprintf("S%d", i), State: Held, Holder: "x"})
		if got := drainFrames(fast); len(got) == 0 {
			t.Fatalf("batch %d did not reach the fast connection", i)
		}
	}
	select {
	case <-slow.kicked:
	default:
		t.Fatal("the slow connection was not kicked")
	}
	select {
	case <-fast.kicked:
		t.Fatal("the fast connection was kicked")
	default:
	}
	if got := len(drainFrames(slow)); got != 3 {
		t.Errorf("slow queue holds %d frames, want its capacity 3", got)
	}
}

// TestRoom_JoinsDuringBatches: connections joining while batches are
// published each see their snapshot and then every later batch, seq rising
// by one each time.
func TestRoom_JoinsDuringBatches(t *testing.T) {
	r := newTestRoom(50, Options{})
	const joiners, batches = 20, 200
	conns := make([]*conn, joiners)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < batches; i++ {
			st := Held
			if i%2 == 1 {
				st = Available
			}
			applyBatch(r, Change{Seat: fmt.Sprintf("S%d", i%50), State: st, Holder: "h"})
		}
	}()
	for i := range conns {
		conns[i] = newConn(fmt.Sprintf("j%d", i), JSONEncoder{}, batches+2)
		wg.Add(1)
		go func() { defer wg.Done(); r.add(conns[i]) }()
	}
	wg.Wait()
	for i, c := range conns {
		frames := drainFrames(c)
		if len(frames) == 0 || frames[0].tail == nil {
			t.Fatalf("joiner %d: first frame is not a snapshot", i)
		}
		for k := 1; k < len(frames); k++ {
			if frames[k].seq != frames[k-1].seq+1 {
				t.Fatalf("joiner %d: seq %d after %d", i, frames[k].seq, frames[k-1].seq)
			}
		}
		if last := frames[len(frames)-1].seq; last != batches {
			t.Errorf("joiner %d: last seq %d, want %d", i, last, batches)
		}
	}
}

// BenchmarkFanout10k measures one batch (20 changes, 3 of them holds by
// subscribed fans) fanned out to 10,000 in-process subscribers: applying it
// to the seat map, encoding it (once shared, once per involved fan) and
// queueing it to every subscriber. No sockets.
func BenchmarkFanout10k(b *testing.B) {
	const subscribers, seats = 10_000, 10_000
	r := newTestRoom(seats, Options{})
	conns := make([]*conn, subscribers)
	for i := range conns {
		conns[i] = newConn(fmt.Sprintf("fan-%d", i), JSONEncoder{}, 64)
		r.add(conns[i])
	}
	drainAll := func() {
		for _, c := range conns {
			drainFrames(c)
		}
	}
	drainAll()
	changes := make([][]Change, 2)
	for k := range changes {
		for j := 0; j < 20; j++ {
			ch := Change{Seat: fmt.Sprintf("S%d", j*37), State: Available}
			if k == 0 {
				ch.State, ch.Holder = Held, "nobody"
				if j < 3 {
					ch.Holder = fmt.Sprintf("fan-%d", j*1000)
				}
			}
			changes[k] = append(changes[k], ch)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		applyBatch(r, changes[i%2]...)
		if i%32 == 31 {
			b.StopTimer()
			drainAll()
			b.StartTimer()
		}
	}
	b.StopTimer()
	for _, c := range conns {
		select {
		case <-c.kicked:
			b.Fatal("a subscriber overflowed")
		default:
		}
	}
}
