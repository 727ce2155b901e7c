// Package loadtest is `seatmap loadtest`: a load generator that drives one
// or several running seatmap servers (sharing Redis and Postgres) through
// their public contract only (HTTP JSON and the JSON WebSocket
// /api/events/{event}/ws, API.md) with many simulated fans, and reports
// throughput, latency percentiles, errors by code, the admission rate, seats
// sold twice (from the responses), fans' live maps that diverged from the
// truth after the run (lost changes), and each server's memory and CPU.
//
// One process (the coordinator) creates or looks up the event, runs the
// fans itself or in --procs worker processes (re-executions of the same
// binary: each process may hold about 18,000 sockets), prints a progress
// line every second and merges everything into one Report at the end.
package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"
)

// The load generator's garbage collection. Its fans read every frame into
// a buffer (a snapshot is ~220 KB). At Go's default GOGC=100 a drop
// collected so often that the sync.Pool the buffers were then kept in was
// emptied and refilled with freshly zeroed ones: in a 20,000-fan drop
// bytes.growSlice took 14 % of a worker's CPU, CPU the measured server
// shares on one machine. GOGC=400 halved that and cut the worker's CPU by
// 14 % (PERFORMANCE.md, seventh round); the buffers are now kept through
// collections (frameBufs), and fewer collections still cost less. The
// soft memory limit stops a process from growing past 4 GiB on its account.
const (
	loadGenGCPercent   = 400
	loadGenMemoryLimit = 4 << 30
)

// TuneGC applies loadGenGCPercent and loadGenMemoryLimit to this process,
// unless getenv names GOGC or GOMEMLIMIT (those win). Both are settings of
// the whole process, so the `seatmap loadtest` command calls it, not Run:
// tests that call Run keep their own.
func TuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(loadGenGCPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(loadGenMemoryLimit)
	}
}

// Run is `seatmap loadtest`: args are the arguments after "loadtest". It
// parses flags (-h/--help prints them and returns nil), runs the scenario
// until it finishes, --duration passes or ctx is cancelled, and prints the
// summary (and with --json one JSON object on stdout). It returns an error
// for bad flags, an unreachable server or event, when seats were sold twice
// and when fans' live maps diverged from the truth (maps_diverged > 0).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, spec, err := parseFlags(args, os.Getenv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	if spec != "" {
		return runWorker(ctx, spec, os.Stdin, stdout)
	}
	stderr = &lockedWriter{w: stderr} // worker processes' stderr is copied in concurrently
	stop, err := startCPUProfile(cfg.CPUProfile)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	rep, err := runCoordinator(ctx, &cfg, stderr)
	stop()
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	if cfg.JSON {
		writeSummary(stderr, rep)
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeSummary(stdout, rep)
	}
	var errs []string
	if rep.DoubleSold > 0 {
		errs = append(errs, fmt.Sprintf("%d seat(s) sold twice: %v", rep.DoubleSold, rep.DoubleSoldList))
	}
	if rep.MapsDiverged > 0 {
		errs = append(errs, fmt.Sprintf("%d of %d live map(s) diverged from the truth (lost changes)", rep.MapsDiverged, rep.MapsChecked))
	}
	if len(errs) > 0 {
		return fmt.Errorf("loadtest: %s", strings.Join(errs, "; "))
	}
	return nil
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// runShare runs one process's part of the scenario.
func runShare(ctx context.Context, e *env) {
	switch e.cfg.Scenario {
	case "drop":
		runDrop(ctx, e)
	case "idle":
		runIdle(ctx, e)
	case "holds":
		runHolds(ctx, e)
	case "checkout":
		runCheckout(ctx, e)
	}
}

// setup prepares a process: file limit, client, venue, env.
func setup(ctx context.Context, cfg *Config, sh share, seed uint64) (*env, error) {
	limit, err := raiseFileLimit()
	if err != nil {
		return nil, fmt.Errorf("open-files limit: %w", err)
	}
	if need := uint64(sh.fans + cfg.HTTPConns + 64); (cfg.Scenario == "drop" || cfg.Scenario == "idle") && need > limit {
		return nil, fmt.Errorf("%d fans in one process need about %d open files, the limit is %d: use --procs", sh.fans, need, limit)
	}
	cl := newClient(cfg)
	var ev *eventDetail
	for try := 0; ; try++ {
		if ev, err = cl.eventDetail(ctx); err == nil || try >= 2 || !retryable(err) || !sleep(ctx, time.Second) {
			break
		}
	}
	if err != nil {
		cl.close()
		return nil, fmt.Errorf("event %s: %w", cfg.Event, err)
	}
	v := newVenue(ev)
	if len(v.ids) == 0 {
		cl.close()
		return nil, fmt.Errorf("event %s has no seats", cfg.Event)
	}
	st := newStats()
	e := newEnv(ctx, cfg, cl, v, st, seed, sh)
	if cfg.Scenario == "drop" || cfg.Scenario == "idle" {
		e.pr = newProbe(len(v.ids))
		st.probe = e.pr
	}
	return e, nil
}

// sampleEvery is how often the coordinator reads the counters (connected
// peak) and the server's /proc; progress is printed every fourth sample.
const sampleEvery = 250 * time.Millisecond

// runCoordinator runs the whole load test and returns its report.
func runCoordinator(ctx context.Context, cfg *Config, stderr io.Writer) (*Report, error) {
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	cl := newClient(cfg)
	defer cl.close()
	if cfg.CreateEvent {
		if err := cl.createEvent(ctx, cfg); err != nil {
			return nil, fmt.Errorf("create event %s: %w", cfg.Event, err)
		}
		fmt.Fprintf(stderr, "loadtest: created event %s (%d seats)\n", cfg.Event, cfg.Sections*cfg.Rows*cfg.SeatsPerRow)
	}
	ev, err := cl.eventDetail(ctx)
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", cfg.Event, err)
	}
	v := newVenue(ev)
	seatsTotal := len(v.ids)

	var srv *serverWatch
	if len(cfg.ServerPIDs) > 0 {
		if srv, err = newServerWatch(cfg.ServerPIDs); err != nil {
			return nil, err
		}
	}
	// The checking fan joins first, so that it is admitted early.
	var truth *truthFan
	truthErr := ""
	if checksMaps(cfg.Scenario) {
		if truth, err = newTruthFan(ctx, cfg, cl, v); err != nil {
			truthErr = fmt.Sprintf("the checking fan could not join on %s: %v", cl.bases[0], err)
			truth = nil
		}
	}

	start := time.Now()
	runCtx, cancel := context.WithDeadline(ctx, start.Add(cfg.Duration))
	defer cancel()
	procs := cfg.procs()
	var shares shareRunner
	if procs == 1 {
		shares, err = startLocal(ctx, runCtx, cfg, seed)
	} else {
		shares, err = startWorkers(runCtx, cfg, procs, seed, start.Add(cfg.Duration), stderr)
	}
	if err != nil {
		return nil, err
	}
	if truth != nil {
		defer truth.e.stopLinger()
		go truth.keepPlace(runCtx, truth.f)
	}

	var (
		peak        int64
		lastErrors  int64
		soldOut     bool
		soldOutAt   time.Duration
		ticks       int
		checkSold   = cfg.Scenario == "drop" || cfg.Scenario == "checkout"
		tick        = time.NewTicker(sampleEvery)
		lastPrinted = start
		checking    bool
		soldCh      = make(chan time.Duration, 1)
	)
	defer tick.Stop()
	// checkSoldOut asks the server, without blocking the loop, whether the
	// event is sold out; at most one question is in flight.
	checkSoldOut := func() {
		checking = true
		go func() {
			qctx, qcancel := context.WithTimeout(runCtx, 5*time.Second)
			defer qcancel()
			at := time.Duration(-1)
			if n, err := cl.seatsUnsold(qctx, seatsTotal); err == nil && n == 0 {
				at = time.Since(start)
			}
			soldCh <- at
		}()
	}
loop:
	for {
		select {
		case <-shares.done():
			break loop
		case <-runCtx.Done():
			break loop
		case at := <-soldCh:
			checking = false
			if at >= 0 {
				soldOut, soldOutAt = true, at
				break loop
			}
			continue
		case <-tick.C:
		}
		ticks++
		p := shares.progress()
		if p.Connected > peak {
			peak = p.Connected
			if srv != nil {
				srv.sampleAtPeak()
			}
		}
		if srv != nil {
			srv.sample()
		}
		if ticks%4 != 0 {
			continue
		}
		now := time.Now()
		if !cfg.Quiet {
			rate := int64(float64(p.Errors-lastErrors) / now.Sub(lastPrinted).Seconds())
			fmt.Fprintln(stderr, progressLine(now.Sub(start), p, rate))
		}
		lastErrors, lastPrinted = p.Errors, now
		if checkSold && !checking {
			checkSoldOut()
		}
	}
	end := time.Since(start)
	if soldOut {
		end = soldOutAt
	}
	cancel()
	shares.stop() // the fans have stopped buying; those on the page still listen
	if srv != nil {
		srv.sample()
	}
	var conv convergence
	switch {
	case truth != nil:
		if !cfg.Quiet {
			fmt.Fprintf(stderr, "loadtest: checking the fans' maps (changes settle for %v)\n", settleTime(cfg))
		}
		conv = converge(ctx, cfg, truth, shares)
	case truthErr != "":
		conv.err = truthErr
	}
	st, procsRun := shares.finish()

	rep := st.report()
	rep.Scenario, rep.URL, rep.Event, rep.Procs = cfg.Scenario, strings.Join(cfg.URLs, ","), cfg.Event, procsRun
	rep.ElapsedS = round3(end.Seconds())
	rep.ConnectedPeak = peak
	rep.SeatsTotal = seatsTotal
	if checkSold && !soldOut {
		fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
		if n, err := cl.seatsUnsold(fctx, seatsTotal); err == nil && n == 0 {
			soldOut, soldOutAt = true, end
		}
		fcancel()
	}
	if soldOut {
		// When the last seat was sold as the fans learnt it: the answer to
		// the order that sold it. The poll above learns of it later, from
		// a server that is at its busiest then (its answers took seconds).
		if at, ok := st.ledger.lastSale(); ok && st.ledger.seatsSold() == seatsTotal && at.After(start) && at.Sub(start) < soldOutAt {
			soldOutAt = at.Sub(start)
		}
		rep.SoldOut = true
		s := round3(soldOutAt.Seconds())
		rep.SoldOutS = &s
	}
	fans := st.serverFans()
	for i, u := range cfg.URLs {
		sr := serverReport{URL: u}
		if i < len(fans) {
			sr.Fans = fans[i]
		}
		rep.Servers = append(rep.Servers, sr)
	}
	if srv != nil {
		srv.fill(&rep, peak)
	}
	if checksMaps(cfg.Scenario) {
		conv.fill(&rep, v, st.ledger.records(), cfg.URLs)
	}
	return &rep, nil
}

// shareRunner is the running fans: in this process or in workers.
type shareRunner interface {
	done() <-chan struct{} // closed when every share finished by itself
	progress() progress
	// stop ends the run's buying (after the run's ctx was cancelled) and
	// waits until every share has stopped; fans kept for the map check
	// still listen.
	stop()
	// check compares every share's kept fans' maps with truth (round
	// 1, 2, ... of the map check) and returns the merged outcome.
	check(round int, truth []uint8) mapCheck
	// finish closes the sockets, waits for every share and returns the
	// merged stats and how many processes ran.
	finish() (*stats, int)
}

// localRun is the fans in this process (--procs 1).
type localRun struct {
	e  *env
	ch chan struct{}
}

// startLocal runs the fans in this process until runCtx ends; their
// sockets may outlive it (until finish), but not ctx.
func startLocal(ctx, runCtx context.Context, cfg *Config, seed uint64) (*localRun, error) {
	e, err := setup(ctx, cfg, splitShare(cfg, 0, 1), seed)
	if err != nil {
		return nil, err
	}
	l := &localRun{e: e, ch: make(chan struct{})}
	go func() {
		defer close(l.ch)
		runShare(runCtx, e)
	}()
	return l, nil
}

func (l *localRun) done() <-chan struct{} { return l.ch }
func (l *localRun) progress() progress    { return l.e.st.progress() }
func (l *localRun) stop()                 { <-l.ch } // runShare returns within its own bound once ctx is done
func (l *localRun) check(_ int, truth []uint8) mapCheck {
	return l.e.checkMaps(truth)
}
func (l *localRun) finish() (*stats, int) {
	<-l.ch
	l.e.closeSockets()
	l.e.cl.close()
	return l.e.st, 1
}

// serverWatch samples the servers' /proc entries (--server-pid, one per
// --url server).
type serverWatch struct {
	pids     []int
	mu       sync.Mutex
	base     []procSample
	last     []procSample
	peakRSS  []uint64
	rssAtTop []uint64 // RSS when the connected count last reached its peak
}

func newServerWatch(pids []int) (*serverWatch, error) {
	w := &serverWatch{pids: pids}
	for _, pid := range pids {
		s, err := readProc(pid)
		if err != nil {
			return nil, fmt.Errorf("--server-pid %d: %w", pid, err)
		}
		w.base, w.last = append(w.base, s), append(w.last, s)
		w.peakRSS, w.rssAtTop = append(w.peakRSS, s.RSSBytes), append(w.rssAtTop, s.RSSBytes)
	}
	return w, nil
}

func (w *serverWatch) sample() {
	for i, pid := range w.pids {
		s, err := readProc(pid)
		if err != nil {
			continue // the server exited; keep its last reading
		}
		w.mu.Lock()
		w.last[i] = s
		w.peakRSS[i] = max(w.peakRSS[i], s.RSSBytes)
		w.mu.Unlock()
	}
}

func (w *serverWatch) sampleAtPeak() {
	w.sample()
	w.mu.Lock()
	for i := range w.pids {
		w.rssAtTop[i] = w.last[i].RSSBytes
	}
	w.mu.Unlock()
}

// fill puts the server figures into r: per server (r.Servers, one per pid
// in the same order) its peak RSS, RSS before the run and CPU used during
// the run; in the totals their sums and the RSS growth per connection at
// the connection peak (all servers' growth ÷ all sockets).
func (w *serverWatch) fill(r *Report, peakConns int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var rss, base, top uint64
	var cpu float64
	for i, pid := range w.pids {
		p, peak, b := pid, w.peakRSS[i], w.base[i].RSSBytes
		c := round3(w.last[i].CPUSeconds - w.base[i].CPUSeconds)
		if i < len(r.Servers) {
			sv := &r.Servers[i]
			sv.PID, sv.RSSBytes, sv.RSSBaseBytes, sv.CPUSeconds = &p, &peak, &b, &c
		}
		rss, base, top, cpu = rss+peak, base+b, top+w.rssAtTop[i], cpu+c
	}
	cpu = round3(cpu)
	r.ServerRSSBytes, r.ServerRSSBaseBytes, r.ServerCPUSeconds = &rss, &base, &cpu
	if peakConns > 0 && top > base {
		per := (top - base) / uint64(peakConns)
		r.ServerRSSPerConnBytes = &per
	}
}

// startCPUProfile profiles this process into path until stop is called
// (nothing when path is empty).
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
