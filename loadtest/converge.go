package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// The map check. Every change a fan can see must reach every connected fan
// on every server (DESIGN.md, invariant 4). After a drop or idle run, fans
// still on the page keep their sockets; once changes have settled, the
// coordinator takes the truth — a fresh snapshot from the first server,
// checked against the staff stats (sold from Postgres, held from Redis) —
// and every process compares each such fan's live map with it. A map that
// still differs after checkRounds rounds (a late change converges by the
// next round; a lost one never does) is a lost change.

// checkRounds is the most times the check is made while something
// differs: a map behind its server (batches still in its socket, read by a
// load generator that shares the machine with the servers) converges as
// its reader catches up; a lost change never does. The check ends early
// when two rounds in a row bring no fewer diverged maps.
const checkRounds = 12

// checkProgress is the map check's stopping rule: another round is worth it
// while the diverged maps keep falling; two rounds in a row without a new
// low end it.
type checkProgress struct {
	best    int64 // fewest diverged maps so far
	stalled int   // rounds since best fell
	started bool
}

// still records a round's diverged count and reports whether to go on.
func (p *checkProgress) still(diverged int64) bool {
	if p.started && diverged >= p.best {
		p.stalled++
		return p.stalled < 2
	}
	p.started, p.best, p.stalled = true, diverged, 0
	return true
}

// recheckEvery is the wait between rounds after the first.
const recheckEvery = 5 * time.Second

// truthTimeout bounds the wait for the truth snapshot.
const truthTimeout = 30 * time.Second

// maxMapExamples is how many diverged maps the report describes.
const maxMapExamples = 10

// checksMaps reports whether a scenario's fans keep live maps to check.
func checksMaps(scenario string) bool { return scenario == "drop" || scenario == "idle" }

// settleTime is how long the check waits after the run before it takes the
// truth: two push intervals (a change batched just after the end, then its
// delivery) and a second for the outbox relay and the keyspace listener.
func settleTime(cfg *Config) time.Duration { return 2*cfg.PushEvery + time.Second }

// mapCheck is the outcome of comparing fans' maps with one truth, per
// server (index into --url). It is what a worker process sends back.
type mapCheck struct {
	Checked  []int64  `json:"checked"`
	Diverged []int64  `json:"diverged"`
	Examples []string `json:"examples"`
}

func newMapCheck(servers int) mapCheck {
	return mapCheck{Checked: make([]int64, servers), Diverged: make([]int64, servers), Examples: []string{}}
}

// add merges o into c.
func (c *mapCheck) add(o mapCheck) {
	for i := range o.Checked {
		for len(c.Checked) <= i {
			c.Checked, c.Diverged = append(c.Checked, 0), append(c.Diverged, 0)
		}
		c.Checked[i] += o.Checked[i]
		if i < len(o.Diverged) {
			c.Diverged[i] += o.Diverged[i]
		}
	}
	for _, ex := range o.Examples {
		if len(c.Examples) < maxMapExamples {
			c.Examples = append(c.Examples, ex)
		}
	}
}

func (c mapCheck) total() (checked, diverged int64) {
	for i := range c.Checked {
		checked += c.Checked[i]
		diverged += c.Diverged[i]
	}
	return checked, diverged
}

// diffMap returns how many seats of a fan's map differ from the truth and
// the first of them (-1 if none). The fan's own "taken" marks (stTaken) are
// ignored, and so is ownership: the map keeps no "mine", a held seat is held.
func diffMap(m, truth []uint8) (n, first int) {
	first = -1
	if bytes.Equal(m, truth) {
		return 0, -1
	}
	for i := range max(len(m), len(truth)) {
		var a, b uint8 = stUnknown, stUnknown
		if i < len(m) {
			a = m[i] & stMask
		}
		if i < len(truth) {
			b = truth[i] & stMask
		}
		if a != b {
			if n == 0 {
				first = i
			}
			n++
		}
	}
	return n, first
}

// checkMaps compares the live map of every fan kept by watch whose socket
// is still open with truth (seat states in venue order).
func (e *env) checkMaps(truth []uint8) mapCheck {
	res := newMapCheck(e.servers())
	e.watchMu.Lock()
	ws := append([]*session(nil), e.watchers...)
	e.watchMu.Unlock()
	for _, s := range ws {
		if s.m == nil || !s.live.Load() {
			continue
		}
		s.m.mu.Lock()
		n, first := diffMap(s.m.states, truth)
		var got uint8
		if first >= 0 && first < len(s.m.states) {
			got = s.m.states[first] & stMask
		}
		seq, at, frames := s.m.seq, s.m.at, s.m.frames
		s.m.mu.Unlock()
		s.connMu.Lock()
		local := s.local
		s.connMu.Unlock()
		srv := e.cl.server(&s.f)
		res.Checked[srv]++
		if n == 0 {
			continue
		}
		res.Diverged[srv]++
		if len(res.Examples) < maxMapExamples {
			want := stUnknown
			if first < len(truth) {
				want = truth[first] & stMask
			}
			name := fmt.Sprintf("#%d", first)
			if first < len(e.v.ids) {
				name = e.v.ids[first]
			}
			res.Examples = append(res.Examples, fmt.Sprintf("a fan on %s (socket %s): %d of %d seats differ, e.g. %s is %s, truth %s; its last frame seq %d, read %.1f s before the check, %d frames",
				e.cl.bases[srv], local, n, len(truth), name, stateName(got), stateName(want), seq, time.Since(at).Seconds(), frames))
		}
	}
	return res
}

// truthFan is the coordinator's checking fan: it joins the waiting room on
// the first server when the run starts (so it is admitted early) and, after
// the run, opens a socket for a fresh snapshot: the truth.
type truthFan struct {
	e *env // the coordinator's: client, venue, stats nobody reads
	f fan
}

// newTruthFan makes the checking fan and joins it to the waiting room.
func newTruthFan(ctx context.Context, cfg *Config, cl *client, v *venue) (*truthFan, error) {
	t := &truthFan{e: newEnv(ctx, cfg, cl, v, newStats(), 0, share{})}
	_, err := cl.join(ctx, &t.f)
	return t, err
}

// keepPlace polls the checking fan's place every 10 s until it is admitted
// (a fan with no socket and no poll for 30 s loses its place), joining
// again if the place was lost. f is a copy of the fan.
func (t *truthFan) keepPlace(ctx context.Context, f fan) {
	for sleep(ctx, 10*time.Second) {
		q, err := t.e.cl.queue(ctx, &f)
		switch {
		case err != nil:
		case q.State == "admitted":
			return
		case q.State == "none":
			t.e.cl.join(ctx, &f)
		}
	}
}

// snapshot opens a socket on the first server and returns the seat states
// of the first snapshot it gets (venue order) and its seq.
func (t *truthFan) snapshot(ctx context.Context) ([]uint8, uint64, error) {
	s := newSession(t.e, true, false)
	s.probeFan = true
	s.f = t.f
	sctx, cancel := context.WithTimeout(ctx, truthTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.run(sctx) }()
	var err error
	finished := false
	select {
	case <-s.ready:
	case err = <-done:
		finished = true
		if err == nil {
			err = fmt.Errorf("the socket closed before a snapshot")
		}
	case <-sctx.Done():
		err = fmt.Errorf("no snapshot within %v (is the checking fan admitted?)", truthTimeout)
	}
	var truth []uint8
	var seq uint64
	if err == nil {
		s.m.mu.Lock()
		truth = make([]uint8, len(s.m.states))
		for i, st := range s.m.states {
			truth[i] = st & stMask
		}
		seq = s.m.seq
		s.m.mu.Unlock()
	}
	s.stop()
	cancel()
	if !finished {
		<-done
	}
	t.f = s.f // a new cookie, if the server set one
	return truth, seq, err
}

// countStates returns how many seats of a map are sold and held.
func countStates(m []uint8) (sold, held int) {
	for _, s := range m {
		switch s & stMask {
		case stSold:
			sold++
		case stHeld:
			held++
		}
	}
	return sold, held
}

// verifyTruth checks the truth against the staff stats (when the staff
// token is known): "" if they agree or cannot be asked, else what differs.
func verifyTruth(ctx context.Context, cl *client, truth []uint8) string {
	sc, err := cl.staffCounts(ctx)
	if err != nil || (sc.Sold == nil && sc.Held == nil) {
		return ""
	}
	sold, held := countStates(truth)
	if (sc.Sold != nil && *sc.Sold != sold) || (sc.Held != nil && *sc.Held != held) {
		return fmt.Sprintf("the truth snapshot from %s shows %d sold and %d held; the staff stats (Postgres, Redis) say %s sold and %s held",
			cl.bases[0], sold, held, intOr(sc.Sold), intOr(sc.Held))
	}
	return ""
}

func intOr(p *int) string {
	if p == nil {
		return "?"
	}
	return fmt.Sprint(*p)
}

// verifyOrders checks that every seat of every order the fans got is sold
// in the truth: "" if so, else the first that is not.
func verifyOrders(v *venue, truth []uint8, orders []orderRec) string {
	bad, example := 0, ""
	for _, o := range orders {
		for _, seat := range o.Seats {
			i := v.seat([]byte(seat))
			if i < 0 || int(i) >= len(truth) || truth[i]&stMask == stSold {
				continue
			}
			if bad == 0 {
				example = fmt.Sprintf("seat %s of order %s is %s", seat, o.ID, stateName(truth[i]&stMask))
			}
			bad++
		}
	}
	if bad == 0 {
		return ""
	}
	return fmt.Sprintf("the truth snapshot shows %d seat(s) of confirmed orders not sold, e.g. %s", bad, example)
}

// convergence is the map check's outcome, as the coordinator saw it.
type convergence struct {
	ran      bool
	truth    []uint8
	truthSeq uint64
	rounds   int
	after    time.Duration // from the end of the run to the last round
	stats    string        // "": the truth agrees with the staff stats (or they could not be asked)
	check    mapCheck
	err      string
}

// converge runs the map check after the run: it waits settleTime, takes
// the truth, verifies it against the staff stats and has every process
// compare its fans' maps; again every recheckEvery, up to checkRounds
// times, while anything differs and the rounds make progress. It returns
// early (err set) when ctx ends.
func converge(ctx context.Context, cfg *Config, t *truthFan, shares shareRunner) convergence {
	var c convergence
	lastErr := ""
	start := time.Now()
	var prog checkProgress
	for round := 1; round <= checkRounds; round++ {
		wait := settleTime(cfg)
		if round > 1 {
			wait = recheckEvery
		}
		if !sleep(ctx, wait) {
			lastErr = "interrupted"
			break
		}
		truth, seq, err := t.snapshot(ctx)
		if err != nil {
			lastErr = fmt.Sprintf("no truth from %s: %v", t.e.cl.bases[0], err)
			continue
		}
		lastErr = ""
		c.ran, c.truth, c.truthSeq, c.rounds = true, truth, seq, round
		c.stats = verifyTruth(ctx, t.e.cl, truth)
		c.check = shares.check(round, truth)
		c.after = time.Since(start)
		_, d := c.check.total()
		if d == 0 && c.stats == "" || !prog.still(d) {
			break
		}
	}
	if !c.ran {
		c.err = lastErr
	}
	return c
}

// fill puts the check into r; orders are every order the fans got.
func (c *convergence) fill(r *Report, v *venue, orders []orderRec, urls []string) {
	if !c.ran {
		r.MapsError = c.err
		return
	}
	check := newMapCheck(len(urls))
	check.add(c.check)
	// The truth is a map too: the checking fan's, on the first server.
	var problems []string
	if c.stats != "" {
		problems = append(problems, c.stats)
	}
	if p := verifyOrders(v, c.truth, orders); p != "" {
		problems = append(problems, p)
	}
	check.Checked[0]++
	if len(problems) > 0 {
		check.Diverged[0]++
		check.Examples = append(problems, check.Examples...)
		if len(check.Examples) > maxMapExamples {
			check.Examples = check.Examples[:maxMapExamples]
		}
	}
	r.MapsChecked, r.MapsDiverged = check.total()
	r.MapsExamples = check.Examples
	sold, held := countStates(c.truth)
	r.MapsTruth = fmt.Sprintf("snapshot seq %d from %s (round %d of at most %d, %.1f s after the run): %d sold, %d held, %d available",
		c.truthSeq, urls[0], c.rounds, checkRounds, c.after.Seconds(), sold, held, len(c.truth)-sold-held)
	for i := range r.Servers {
		if i < len(check.Checked) {
			r.Servers[i].MapsChecked, r.Servers[i].MapsDiverged = check.Checked[i], check.Diverged[i]
		}
	}
}
