package loadtest

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReportJSONShape(t *testing.T) {
	st := newStats()
	st.fans.Store(3)
	st.holdsOK.Store(2)
	st.fail("seat_limit")
	st.hold.record(3 * time.Millisecond)
	r := st.report()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"scenario", "url", "event", "procs", "elapsed_s", "fans", "connected_peak", "admitted",
		"holds_ok", "holds_conflict", "releases", "orders", "declined", "seats_sold", "seats_total", "sold_out",
		"sold_out_s", "double_sold", "double_sold_seats", "errors", "holds_per_s", "checkouts_per_s", "probe_changes",
		"latency_ms", "server_rss_bytes", "server_rss_base_bytes", "server_rss_per_conn_bytes", "server_cpu_seconds",
		"admitted_per_s", "maps_checked", "maps_diverged", "maps_diverged_examples", "maps_truth", "maps_check_error", "servers"}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keys\n got %v\nwant %v", got, want)
	}
	lat := m["latency_ms"].(map[string]any)
	for _, name := range []string{"join_to_admitted", "hold", "checkout", "change_to_delivered"} {
		l, ok := lat[name].(map[string]any)
		if !ok {
			t.Errorf("latency_ms.%s missing", name)
			continue
		}
		for _, k := range []string{"count", "p50", "p99", "max"} {
			if _, ok := l[k].(float64); !ok {
				t.Errorf("latency_ms.%s.%s missing or not a number", name, k)
			}
		}
	}
	if h := lat["hold"].(map[string]any); h["count"] != 1.0 || h["max"] != 3.0 || math.Abs(h["p50"].(float64)-3) > 0.03 {
		t.Errorf("hold latency = %v, want 1 sample of 3 ms", h)
	}
	if e := m["errors"].(map[string]any); e["seat_limit"] != 1.0 {
		t.Errorf("errors = %v", e)
	}
	if m["double_sold"] != 0.0 || m["server_rss_bytes"] != nil || m["double_sold_seats"] == nil {
		t.Errorf("double_sold %v, server_rss_bytes %v, double_sold_seats %v", m["double_sold"], m["server_rss_bytes"], m["double_sold_seats"])
	}
}

func TestPartialRoundTripMerges(t *testing.T) {
	a := newStats()
	a.fans.Store(5)
	a.orders.Store(1)
	a.seatsSold.Store(2)
	a.fail("hold_lost")
	a.checkout.record(40 * time.Millisecond)
	a.ledger.add("o1", []string{"A-1", "A-2"}, 0)
	a.opStart(time.Unix(100, 0))
	a.opEnd(time.Unix(102, 0))
	b, err := json.Marshal(a.partial())
	if err != nil {
		t.Fatal(err)
	}
	var p partial
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	m := newStats()
	m.merge(p)
	m.merge(p) // a second process with the same numbers
	r := m.report()
	if r.Fans != 10 || r.Orders != 2 || r.SeatsSold != 4 || r.Errors["hold_lost"] != 2 || r.Latency[latCheckout].Count != 2 {
		t.Errorf("merged report = %+v", r)
	}
	if r.CheckoutsPerS != 1 { // 2 orders over the 2 s window
		t.Errorf("checkouts/s = %v, want 1", r.CheckoutsPerS)
	}
	if r.DoubleSold != 0 {
		t.Errorf("the same order id twice is not a double sale")
	}
}

func TestSummaryMentionsEverything(t *testing.T) {
	rss, base, per, cpu, soldAt := uint64(300<<20), uint64(100<<20), uint64(40<<10), 12.5, 41.5
	r := Report{Scenario: "drop", Event: "e", URL: "http://x", Procs: 2, ElapsedS: 50, Fans: 20000, ConnectedPeak: 19000,
		Admitted: 20000, HoldsOK: 10, Orders: 5, SeatsSold: 10000, SeatsTotal: 10000, SoldOut: true, SoldOutS: &soldAt,
		DoubleSold: 1, DoubleSoldList: []string{"A-1"}, Errors: map[string]int64{"b": 2, "a": 1},
		Latency:        map[string]latency{latHold: {Count: 10, P50: 1.5, P99: 9, Max: 10}},
		ServerRSSBytes: &rss, ServerRSSBaseBytes: &base, ServerRSSPerConnBytes: &per, ServerCPUSeconds: &cpu}
	var out bytes.Buffer
	writeSummary(&out, &r)
	s := out.String()
	for _, want := range []string{"scenario drop", "fans 20000", "connected peak 19000", "sold out after 41.5 s",
		"double sold 1", "DOUBLE SOLD SEATS: A-1", "errors: a=1 b=2", "hold ", "1.50", "peak RSS 300.0 MiB",
		"100.0 MiB before", "40.0 KiB per connection", "CPU 12.50 s"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

func TestParseProc(t *testing.T) {
	tests := []struct {
		name, stat string
		want       float64
		wantErr    bool
	}{
		{"plain", "28360 (cat) R 28357 28357 20150 0 -1 4194304 99 0 0 0 250 130 0 0 20 0 1 0 289896", 3.8, false},
		{"name with spaces and parentheses", "7 (a) b (c)) S 1 1 1 0 -1 0 0 0 0 0 100 0 0 0 20 0 1 0 5", 1, false},
		{"truncated", "7 (x) S 1 2", 0, true},
		{"no name", "garbage", 0, true},
		{"not numbers", "7 (x) S 1 1 1 0 -1 0 0 0 0 0 u s 0 0 20", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU(tt.stat)
			if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
				t.Errorf("parseStatCPU = %v, %v; want %v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if rss, err := parseStatmRSS("765 432 404 5 0 123 0\n", 4096); err != nil || rss != 432*4096 {
		t.Errorf("parseStatmRSS = %d, %v", rss, err)
	}
	if _, err := parseStatmRSS("765", 4096); err == nil {
		t.Error("parseStatmRSS accepted one field")
	}
}

func TestReadProcOfThisProcess(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if s.RSSBytes < 1<<20 {
		t.Errorf("RSS %d bytes: too small for a Go test binary", s.RSSBytes)
	}
}

func TestPickSeats(t *testing.T) {
	const A, H, S = stAvailable, stHeld, stSold
	// two rows of five seats
	row := []int32{0, 0, 0, 0, 0, 1, 1, 1, 1, 1}
	tests := []struct {
		name   string
		states []uint8
		n      int
		check  func(t *testing.T, got []int32)
	}{
		{"nothing available", []uint8{H, S, H, S, H, S, H, S, H, S}, 2, func(t *testing.T, got []int32) {
			if got != nil {
				t.Errorf("got %v, want nil", got)
			}
		}},
		{"fewer available than asked", []uint8{H, A, H, H, H, H, H, H, A, H}, 4, func(t *testing.T, got []int32) {
			sortIdx(got)
			if !reflect.DeepEqual(got, []int32{1, 8}) {
				t.Errorf("got %v, want [1 8]", got)
			}
		}},
		{"a block of free seats is taken together", []uint8{S, S, A, A, A, S, S, S, S, S}, 3, func(t *testing.T, got []int32) {
			sortIdx(got)
			if !reflect.DeepEqual(got, []int32{2, 3, 4}) {
				t.Errorf("got %v, want [2 3 4]", got)
			}
		}},
		{"adjacent seats stay in one row", []uint8{A, A, A, A, A, A, A, A, A, A}, 3, func(t *testing.T, got []int32) {
			if len(got) != 3 {
				t.Fatalf("got %v", got)
			}
			sortIdx(got)
			if row[got[0]] != row[got[2]] || got[2]-got[0] != 2 {
				t.Errorf("got %v: not three neighbours in one row", got)
			}
		}},
		{"a row end is filled from elsewhere", []uint8{S, S, S, S, A, A, S, S, S, S}, 2, func(t *testing.T, got []int32) {
			sortIdx(got)
			if !reflect.DeepEqual(got, []int32{4, 5}) {
				t.Errorf("got %v, want [4 5]", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(20) {
				got := pickSeats(tt.states, row, tt.n, rand.New(rand.NewPCG(seed, 1)))
				for _, i := range got {
					if tt.states[i] != stAvailable {
						t.Fatalf("picked seat %d, which is not available", i)
					}
				}
				tt.check(t, got)
			}
		})
	}
}

func sortIdx(s []int32) { sort.Slice(s, func(i, j int) bool { return s[i] < s[j] }) }

func TestProbeMatch(t *testing.T) {
	p := newProbe(10)
	t0 := time.Unix(1000, 0)
	ms := func(n int) int64 { return t0.Add(time.Duration(n) * time.Millisecond).UnixNano() }
	held := p.begin(3, stHeld, t0)
	freed := p.begin(3, stAvailable, t0.Add(500*time.Millisecond))

	var fast int64
	if d, ok := p.match(3, stHeld, ms(80), &fast); !ok || d != 80*time.Millisecond || fast != held {
		t.Errorf("fast listener: %v %v seen %d", d, ok, fast)
	}
	if _, ok := p.match(3, stHeld, ms(90), &fast); ok {
		t.Error("the same change was reported twice")
	}
	if d, ok := p.match(3, stAvailable, ms(560), &fast); !ok || d != 60*time.Millisecond || fast != freed {
		t.Errorf("release: %v %v", d, ok)
	}

	// A slow listener sees the hold after the probe already released: it
	// still times the hold, from the hold's own send time.
	var slow int64
	if d, ok := p.match(3, stHeld, ms(700), &slow); !ok || d != 700*time.Millisecond {
		t.Errorf("slow listener: %v %v", d, ok)
	}
	// Someone else's later hold of the seat is not the probe's.
	if _, ok := p.match(3, stHeld, ms(900), &fast); ok {
		t.Error("a foreign change after the probe's was matched")
	}
	// A change of an untouched seat, an unknown state, a change received
	// before it was sent: none match.
	var fresh int64
	if _, ok := p.match(4, stHeld, ms(10), &fresh); ok {
		t.Error("untouched seat matched")
	}
	if _, ok := p.match(3, stUnknown, ms(10), &fresh); ok {
		t.Error("unknown state matched")
	}
	if _, ok := p.match(3, stAvailable, ms(400), &fresh); ok {
		t.Error("matched a change received before it was sent")
	}
	// A cancelled change (its request failed) never matches.
	c := p.begin(5, stHeld, t0)
	p.cancel(c)
	if _, ok := p.match(5, stHeld, ms(50), &fresh); ok {
		t.Error("cancelled change matched")
	}
	if got := p.changes.Load(); got != 2 {
		t.Errorf("changes = %d, want 2 (the cancelled one does not count)", got)
	}
	// After a snapshot a listener starts from the newest change.
	snap := p.newest()
	if _, ok := p.match(3, stAvailable, ms(600), &snap); ok {
		t.Error("a change older than the listener's snapshot matched")
	}
	// Changes that fell out of the ring are not matched.
	old := p.begin(7, stHeld, t0)
	for i := 0; i < probeRing; i++ {
		p.begin(8, stHeld, t0)
	}
	var late int64 = old - 1
	if _, ok := p.match(7, stHeld, ms(100), &late); ok {
		t.Error("a change out of the ring matched")
	}
}

func TestMapCheckStopsWithoutProgress(t *testing.T) {
	for _, tc := range []struct {
		diverged []int64
		rounds   int // rounds made before it stops (len(diverged) if never)
	}{
		{[]int64{40, 30, 20, 10, 5}, 5},    // falling: keep checking
		{[]int64{41, 41, 41, 41}, 3},       // stuck from the start: two more tries
		{[]int64{50, 10, 12, 9, 11, 8}, 6}, // a new low resets the count
		{[]int64{50, 10, 12, 11, 10}, 4},   // 12 and 11 are no new low
		{[]int64{0}, 1},
	} {
		var p checkProgress
		rounds := 0
		for _, d := range tc.diverged {
			rounds++
			if !p.still(d) {
				break
			}
		}
		if rounds != tc.rounds {
			t.Errorf("%v: stopped after %d rounds, want %d", tc.diverged, rounds, tc.rounds)
		}
	}
}

func TestTuneGC(t *testing.T) {
	gcPercent := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	oldPercent, oldLimit := gcPercent(), debug.SetMemoryLimit(-1)
	defer func() { debug.SetGCPercent(oldPercent); debug.SetMemoryLimit(oldLimit) }()
	tests := []struct {
		name        string
		env         map[string]string
		wantPercent int
		wantLimit   int64
	}{
		{"defaults", nil, loadGenGCPercent, loadGenMemoryLimit},
		{"GOGC set", map[string]string{"GOGC": "50"}, 77, loadGenMemoryLimit},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, loadGenGCPercent, 12345678},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// What the environment would have set, which TuneGC must keep.
			debug.SetGCPercent(77)
			debug.SetMemoryLimit(12345678)
			TuneGC(func(k string) string { return tt.env[k] })
			if p := gcPercent(); p != tt.wantPercent {
				t.Errorf("GC percent %d, want %d", p, tt.wantPercent)
			}
			if l := debug.SetMemoryLimit(-1); l != tt.wantLimit {
				t.Errorf("memory limit %d, want %d", l, tt.wantLimit)
			}
		})
	}
}

// Frame buffers outlive garbage collections (a sync.Pool does not), so a
// snapshot-sized buffer is grown once, not once per snapshot; oversized
// ones are not kept.
func TestFrameBufsAreKeptThroughCollections(t *testing.T) {
	for len(frameBufs) > 0 {
		<-frameBufs
	}
	big := new(bytes.Buffer)
	big.Grow(256 << 10)
	big.WriteString("old frame")
	putFrameBuf(big)
	huge := new(bytes.Buffer)
	huge.Grow(maxFrameBuf + 1)
	putFrameBuf(huge)
	runtime.GC()
	runtime.GC()
	got := getFrameBuf()
	if got != big {
		t.Fatalf("got a buffer of capacity %d, want the kept one of %d", got.Cap(), big.Cap())
	}
	if got.Len() != 0 {
		t.Errorf("a kept buffer comes back holding %d bytes", got.Len())
	}
	if again := getFrameBuf(); again == huge {
		t.Error("a buffer over maxFrameBuf was kept")
	}
}

// Fan sockets to a loopback server come from --source-addrs addresses in
// turn; to anything else, from the kernel's choice.
func TestSourceAddr(t *testing.T) {
	if !spreadSources {
		t.Skip("fan sockets are not spread over source addresses on this system")
	}
	for _, tc := range []struct {
		name string
		addr string
		n    int
		want []string // "" for nil
	}{
		{"loopback, in turn", "127.0.0.1:8080", 3, []string{"127.0.1.2:0", "127.0.1.3:0", "127.0.1.1:0", "127.0.1.2:0"}},
		{"another loopback address", "127.0.0.9:80", 1, []string{"127.0.1.1:0", "127.0.1.1:0"}},
		{"the most", "127.0.0.1:80", 254, []string{"127.0.1.2:0"}},
		{"spreading off", "127.0.0.1:8080", 0, []string{""}},
		{"IPv6 loopback has one address", "[::1]:8080", 32, []string{""}},
		{"not loopback", "10.1.2.3:8080", 32, []string{""}},
		{"a name", "localhost:8080", 32, []string{""}},
		{"no port", "127.0.0.1", 32, []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var next atomic.Uint32
			for i, want := range tc.want {
				got := ""
				if a := sourceAddr(tc.addr, tc.n, &next); a != nil {
					got = a.String()
				}
				if got != want {
					t.Errorf("socket %d: source %q, want %q", i, got, want)
				}
			}
		})
	}
}
