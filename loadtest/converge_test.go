package loadtest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestDiffMap(t *testing.T) {
	const A, H, S, U = stAvailable, stHeld, stSold, stUnknown
	tests := []struct {
		name      string
		m, truth  []uint8
		wantN     int
		wantFirst int
	}{
		{"equal", []uint8{A, H, S}, []uint8{A, H, S}, 0, -1},
		{"one seat differs", []uint8{A, H, S}, []uint8{A, S, S}, 1, 1},
		{"several differ: the first is named", []uint8{H, A, A, S}, []uint8{A, A, S, S}, 2, 0},
		{"a taken mark is the fan's own note, not the socket's state", []uint8{A | stTaken, H | stTaken, S}, []uint8{A, H, S}, 0, -1},
		{"a taken mark does not hide a difference", []uint8{A | stTaken, H}, []uint8{S, H}, 1, 0},
		{"a seat the snapshot never named", []uint8{A, U}, []uint8{A, H}, 1, 1},
		{"a shorter map misses seats", []uint8{A}, []uint8{A, H}, 1, 1},
		{"empty", nil, nil, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, first := diffMap(tt.m, tt.truth)
			if n != tt.wantN || first != tt.wantFirst {
				t.Errorf("diffMap = %d, %d; want %d, %d", n, first, tt.wantN, tt.wantFirst)
			}
		})
	}
}

// mustCheckEnv returns an env with a 4-seat venue on two servers and the
// kept fans' maps (live or not) on the given servers.
func mustCheckEnv(tb testing.TB, fans []struct {
	srv  int
	live bool
	m    []uint8
}) *env {
	tb.Helper()
	cfg := defaultConfig()
	cfg.URLs = []string{"http://a:1", "http://b:2"}
	cfg.Event = "e"
	v := &venue{ids: []string{"A-1", "A-2", "A-3", "A-4"}, index: map[string]int32{"A-1": 0, "A-2": 1, "A-3": 2, "A-4": 3}, row: []int32{0, 0, 0, 0}}
	e := newEnv(context.Background(), &cfg, newClient(&cfg), v, newStats(), 1, share{})
	tb.Cleanup(e.stopLinger)
	for _, f := range fans {
		s := newSession(e, true, false)
		s.f.srv = f.srv
		copy(s.m.states, f.m)
		s.live.Store(f.live)
		e.watch(s)
	}
	return e
}

func TestCheckMapsCountsPerServer(t *testing.T) {
	const A, H, S = stAvailable, stHeld, stSold
	truth := []uint8{S, S, H, A}
	e := mustCheckEnv(t, []struct {
		srv  int
		live bool
		m    []uint8
	}{
		{0, true, []uint8{S, S, H, A}},           // converged
		{0, true, []uint8{S, S, H | stTaken, A}}, // converged; its own mark ignored
		{1, true, []uint8{S, S, H, A}},           // converged
		{1, true, []uint8{S, H, H, A}},           // lost "A-2 sold"
		{1, false, []uint8{A, A, A, A}},          // socket gone: not checked
	})
	c := e.checkMaps(truth)
	if c.Checked[0] != 2 || c.Diverged[0] != 0 || c.Checked[1] != 2 || c.Diverged[1] != 1 {
		t.Errorf("checked %v diverged %v; want [2 2] and [0 1]", c.Checked, c.Diverged)
	}
	if len(c.Examples) != 1 || !strings.Contains(c.Examples[0], "http://b:2") || !strings.Contains(c.Examples[0], "A-2 is held, truth sold") {
		t.Errorf("examples %q", c.Examples)
	}
	// What a worker sends back merges into the coordinator's totals.
	b, _ := json.Marshal(c)
	var back mapCheck
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	var all mapCheck
	all.add(back)
	all.add(back)
	if checked, diverged := all.total(); checked != 8 || diverged != 2 || len(all.Examples) != 2 {
		t.Errorf("merged: %d checked, %d diverged, %d examples", checked, diverged, len(all.Examples))
	}
}

func TestVerifyOrders(t *testing.T) {
	v := &venue{ids: []string{"A-1", "A-2", "A-3"}, index: map[string]int32{"A-1": 0, "A-2": 1, "A-3": 2}}
	truth := []uint8{stSold, stHeld, stAvailable}
	if p := verifyOrders(v, truth, []orderRec{{ID: "o1", Seats: []string{"A-1"}}}); p != "" {
		t.Errorf("a sold seat was reported: %q", p)
	}
	p := verifyOrders(v, truth, []orderRec{{ID: "o1", Seats: []string{"A-1", "A-2"}}, {ID: "o2", Seats: []string{"A-3", "Z-9"}}})
	if !strings.Contains(p, "2 seat(s)") || !strings.Contains(p, "A-2 of order o1 is held") {
		t.Errorf("verifyOrders = %q", p)
	}
}

func TestConvergenceFill(t *testing.T) {
	urls := []string{"http://a:1", "http://b:2"}
	v := &venue{ids: []string{"A-1", "A-2"}, index: map[string]int32{"A-1": 0, "A-2": 1}}
	report := func() Report { return Report{Servers: []serverReport{{URL: urls[0]}, {URL: urls[1]}}} }

	t.Run("all converged: the truth counts as one more map", func(t *testing.T) {
		c := convergence{ran: true, rounds: 1, truth: []uint8{stSold, stAvailable},
			check: mapCheck{Checked: []int64{3, 4}, Diverged: []int64{0, 0}}}
		r := report()
		c.fill(&r, v, []orderRec{{ID: "o", Seats: []string{"A-1"}}}, urls)
		if r.MapsChecked != 8 || r.MapsDiverged != 0 || r.Servers[0].MapsChecked != 4 || r.Servers[1].MapsChecked != 4 ||
			!strings.Contains(r.MapsTruth, "1 sold, 0 held, 1 available") || r.MapsError != "" {
			t.Errorf("report %+v", r)
		}
	})
	t.Run("a truth the stores disagree with is a diverged map", func(t *testing.T) {
		c := convergence{ran: true, rounds: 3, truth: []uint8{stAvailable, stAvailable}, stats: "stats differ",
			check: mapCheck{Checked: []int64{1, 1}, Diverged: []int64{0, 1}, Examples: []string{"fan"}}}
		r := report()
		c.fill(&r, v, []orderRec{{ID: "o", Seats: []string{"A-2"}}}, urls)
		if r.MapsChecked != 3 || r.MapsDiverged != 2 || r.Servers[0].MapsDiverged != 1 || len(r.MapsExamples) != 3 ||
			r.MapsExamples[0] != "stats differ" || !strings.Contains(r.MapsExamples[1], "A-2 of order o") {
			t.Errorf("report %+v", r)
		}
	})
	t.Run("no truth: the check did not run", func(t *testing.T) {
		c := convergence{err: "no truth from http://a:1: timeout"}
		r := report()
		c.fill(&r, v, nil, urls)
		if r.MapsChecked != 0 || r.MapsDiverged != 0 || r.MapsError != c.err {
			t.Errorf("report %+v", r)
		}
	})
}

func TestAdmittedPerSecond(t *testing.T) {
	a, b := newStats(), newStats()
	t0 := time.Unix(1000, 0)
	a.admit(t0)
	a.admit(t0.Add(time.Second))
	b.admit(t0.Add(500 * time.Millisecond))
	b.admit(t0.Add(2 * time.Second))
	m := newStats()
	m.merge(a.partial())
	m.merge(b.partial())
	// 4 admissions over the 2 s from the first to the last.
	if r := m.report(); r.Admitted != 4 || r.AdmittedPerS != 2 {
		t.Errorf("admitted %d, %v/s; want 4, 2/s", r.Admitted, r.AdmittedPerS)
	}
	if r := newStats().report(); r.AdmittedPerS != 0 {
		t.Errorf("no admissions: %v/s", r.AdmittedPerS)
	}
}

func TestServerFansMerge(t *testing.T) {
	a := newStats()
	a.fanOn(0)
	a.fanOn(2)
	a.fanOn(2)
	m := newStats()
	m.merge(a.partial())
	m.fanOn(1)
	if got := m.serverFans(); len(got) != 3 || got[0] != 1 || got[1] != 1 || got[2] != 2 {
		t.Errorf("serverFans = %v, want [1 1 2]", got)
	}
}

func TestIdleMapStride(t *testing.T) {
	tests := []struct{ fans, seats, want int }{
		{100, 600, 1},
		{18000, 600, 1},         // 10.8 MB: every fan
		{18000, 10000, 3},       // 180 MB over 64 MiB
		{0, 100, 1},             // nothing to spread
		{1000000, 200000, 2981}, // still at least one map
	}
	for _, tt := range tests {
		if got := idleMapStride(tt.fans, tt.seats); got != tt.want {
			t.Errorf("idleMapStride(%d, %d) = %d, want %d", tt.fans, tt.seats, got, tt.want)
		}
	}
}
