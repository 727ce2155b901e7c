// Package loadtest is `seatmap loadtest`: a load generator that drives a
// running seatmap server through its public contract only (HTTP JSON and
// the JSON WebSocket /api/events/{event}/ws, API.md) with many simulated
// fans, and reports throughput, latency percentiles, errors by code, seats
// sold twice (from the responses) and the server's memory and CPU.
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
	"sync"
	"time"
)

// Run is `seatmap loadtest`: args are the arguments after "loadtest". It
// parses flags (-h/--help prints them and returns nil), runs the scenario
// until it finishes, --duration passes or ctx is cancelled, and prints the
// summary (and with --json one JSON object on stdout). It returns an error
// for bad flags, an unreachable server or event, and when seats were sold
// twice.
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
	rep, err := runCoordinator(ctx, &cfg, stderr)
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
	if rep.DoubleSold > 0 {
		return fmt.Errorf("loadtest: %d seat(s) sold twice: %v", rep.DoubleSold, rep.DoubleSoldList)
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
	e := &env{cfg: cfg, cl: cl, v: v, st: st, seed: seed, share: sh}
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
	seatsTotal := len(newVenue(ev).ids)

	var srv *serverWatch
	if cfg.ServerPID > 0 {
		if srv, err = newServerWatch(cfg.ServerPID); err != nil {
			return nil, fmt.Errorf("--server-pid %d: %w", cfg.ServerPID, err)
		}
	}

	start := time.Now()
	runCtx, cancel := context.WithDeadline(ctx, start.Add(cfg.Duration))
	defer cancel()
	procs := cfg.procs()
	var shares shareRunner
	if procs == 1 {
		shares, err = startLocal(runCtx, cfg, seed)
	} else {
		shares, err = startWorkers(runCtx, cfg, procs, seed, start.Add(cfg.Duration), stderr)
	}
	if err != nil {
		return nil, err
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
	st, procsRun := shares.finish()
	if srv != nil {
		srv.sample()
	}

	rep := st.report()
	rep.Scenario, rep.URL, rep.Event, rep.Procs = cfg.Scenario, cfg.URL, cfg.Event, procsRun
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
		rep.SoldOut = true
		s := round3(soldOutAt.Seconds())
		rep.SoldOutS = &s
	}
	if srv != nil {
		srv.fill(&rep, peak)
	}
	return &rep, nil
}

// shareRunner is the running fans: in this process or in workers.
type shareRunner interface {
	done() <-chan struct{} // closed when every share finished by itself
	progress() progress
	// finish waits for every share (after the run's ctx was cancelled)
	// and returns the merged stats and how many processes ran.
	finish() (*stats, int)
}

// localRun is the fans in this process (--procs 1).
type localRun struct {
	e  *env
	ch chan struct{}
}

func startLocal(ctx context.Context, cfg *Config, seed uint64) (*localRun, error) {
	e, err := setup(ctx, cfg, splitShare(cfg, 0, 1), seed)
	if err != nil {
		return nil, err
	}
	l := &localRun{e: e, ch: make(chan struct{})}
	go func() {
		defer close(l.ch)
		runShare(ctx, e)
	}()
	return l, nil
}

func (l *localRun) done() <-chan struct{} { return l.ch }
func (l *localRun) progress() progress    { return l.e.st.progress() }
func (l *localRun) finish() (*stats, int) {
	<-l.ch // runShare returns within its own bound once ctx is done
	l.e.cl.close()
	return l.e.st, 1
}

// serverWatch samples the server's /proc entry.
type serverWatch struct {
	pid      int
	mu       sync.Mutex
	base     procSample
	last     procSample
	peakRSS  uint64
	rssAtTop uint64 // RSS when the connected count last reached its peak
	failed   bool
}

func newServerWatch(pid int) (*serverWatch, error) {
	s, err := readProc(pid)
	if err != nil {
		return nil, err
	}
	return &serverWatch{pid: pid, base: s, last: s, peakRSS: s.RSSBytes, rssAtTop: s.RSSBytes}, nil
}

func (w *serverWatch) sample() {
	s, err := readProc(w.pid)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.failed = true // the server exited; keep the last reading
		return
	}
	w.last = s
	w.peakRSS = max(w.peakRSS, s.RSSBytes)
}

func (w *serverWatch) sampleAtPeak() {
	w.sample()
	w.mu.Lock()
	w.rssAtTop = w.last.RSSBytes
	w.mu.Unlock()
}

// fill puts the server figures into r: peak RSS, RSS before the run, RSS
// growth per connection at the connection peak, CPU used during the run.
func (w *serverWatch) fill(r *Report, peakConns int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rss, base := w.peakRSS, w.base.RSSBytes
	cpu := round3(w.last.CPUSeconds - w.base.CPUSeconds)
	r.ServerRSSBytes, r.ServerRSSBaseBytes, r.ServerCPUSeconds = &rss, &base, &cpu
	if peakConns > 0 && w.rssAtTop > base {
		per := (w.rssAtTop - base) / uint64(peakConns)
		r.ServerRSSPerConnBytes = &per
	}
}
