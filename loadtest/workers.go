package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// workerCommand is the subcommand a worker process is started with:
// os.Executable() + workerCommand + --worker SPEC.
var workerCommand = []string{"loadtest"}

// workerSpec is what the coordinator tells a worker process.
type workerSpec struct {
	Config   Config `json:"config"`
	Index    int    `json:"index"`
	Count    int    `json:"count"`
	Seed     uint64 `json:"seed"`
	Deadline int64  `json:"deadline"` // UnixNano: stop by then
}

// workerMsg is one line a worker writes on its stdout.
type workerMsg struct {
	Progress *progress `json:"progress,omitempty"`
	Stopped  bool      `json:"stopped,omitempty"` // the share stopped buying
	Check    *mapCheck `json:"check,omitempty"`   // the answer to a coordMsg with a truth
	Round    int       `json:"round,omitempty"`   // of Check
	Result   *partial  `json:"result,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// coordMsg is one line the coordinator writes on a worker's stdin: stop
// (the run is over), or a truth to compare the kept fans' maps with. The
// end of stdin means: close the sockets and hand in the result.
type coordMsg struct {
	Stop  bool    `json:"stop,omitempty"`
	Round int     `json:"round,omitempty"`
	Truth []uint8 `json:"truth,omitempty"`
}

// runWorker is a worker process: it runs its share until the deadline or
// the coordinator's stop (a line on stdin, or its end), writing a progress
// line every sampleEvery and a "stopped" line when its fans stopped buying;
// then it answers each truth the coordinator sends with the map check of its
// kept fans and, when stdin ends, closes their sockets and writes one
// result line.
func runWorker(ctx context.Context, specJSON string, stdin io.Reader, stdout io.Writer) error {
	var spec workerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("loadtest worker: bad spec: %w", err)
	}
	if spec.Count < 1 || spec.Index < 0 || spec.Index >= spec.Count {
		return fmt.Errorf("loadtest worker: index %d of %d", spec.Index, spec.Count)
	}
	cfg := spec.Config
	if cfg.CPUProfile != "" {
		stop, err := startCPUProfile(fmt.Sprintf("%s.w%d", cfg.CPUProfile, spec.Index))
		if err != nil {
			return fmt.Errorf("loadtest worker: %w", err)
		}
		defer stop()
	}
	root := ctx
	ctx, cancel := context.WithDeadline(ctx, time.Unix(0, spec.Deadline))
	defer cancel()
	truths := make(chan coordMsg, checkRounds)
	go func() {
		defer close(truths)
		defer cancel() // EOF: the coordinator says stop (or is gone)
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			var m coordMsg
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			if m.Stop {
				cancel()
			}
			if m.Truth != nil {
				select {
				case truths <- m:
				default: // more rounds than asked for: the coordinator is confused
				}
			}
		}
	}()
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	send := func(m workerMsg) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(m)
	}
	e, err := setup(root, &cfg, splitShare(&cfg, spec.Index, spec.Count), spec.Seed)
	if err != nil {
		send(workerMsg{Error: err.Error()})
		return fmt.Errorf("loadtest worker %d: %w", spec.Index, err)
	}
	defer e.cl.close()
	defer e.closeSockets()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runShare(ctx, e)
	}()
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-tick.C:
			p := e.st.progress()
			if err := send(workerMsg{Progress: &p}); err != nil {
				cancel() // the coordinator is gone
			}
		}
	}
	send(workerMsg{Stopped: true})
	for m := range truths {
		c := e.checkMaps(m.Truth)
		send(workerMsg{Check: &c, Round: m.Round})
	}
	e.closeSockets()
	res := e.st.partial()
	return send(workerMsg{Result: &res})
}

// workerRun is the fans in worker processes.
type workerRun struct {
	procs  []*workerProc
	ch     chan struct{}
	stderr io.Writer
}

type workerProc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	mu       sync.Mutex
	last     progress
	result   *partial
	err      string
	exited   chan struct{}
	first    chan struct{} // closed at the first line (or exit)
	once     sync.Once
	stopped  chan struct{} // closed at the "stopped" line (or exit)
	stopOnce sync.Once
	checks   chan workerMsg // map check answers
}

// startTimeout bounds a worker's set-up (reading the event).
const startTimeout = 60 * time.Second

// startWorkers starts n worker processes and waits until each has found
// the event (its first progress line) or failed.
func startWorkers(ctx context.Context, cfg *Config, n int, seed uint64, deadline time.Time, stderr io.Writer) (*workerRun, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--procs: cannot find this program: %w", err)
	}
	wcfg := *cfg
	wcfg.CreateEvent, wcfg.JSON, wcfg.ServerPIDs, wcfg.Procs = false, false, nil, n
	r := &workerRun{ch: make(chan struct{}), stderr: stderr}
	for i := 0; i < n; i++ {
		spec, err := json.Marshal(workerSpec{Config: wcfg, Index: i, Count: n, Seed: seed, Deadline: deadline.UnixNano()})
		if err != nil {
			return nil, err
		}
		args := append(append([]string{}, workerCommand...), "--worker", string(spec))
		cmd := exec.Command(exe, args...)
		cmd.Stderr = stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			r.kill()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			r.kill()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			r.kill()
			return nil, fmt.Errorf("--procs: start worker %d: %w", i, err)
		}
		w := &workerProc{cmd: cmd, stdin: stdin, exited: make(chan struct{}), first: make(chan struct{}),
			stopped: make(chan struct{}), checks: make(chan workerMsg, checkRounds)}
		r.procs = append(r.procs, w)
		go w.readLoop(out)
	}
	timeout := time.After(startTimeout)
	for i, w := range r.procs {
		select {
		case <-w.first:
		case <-timeout:
			r.kill()
			return nil, fmt.Errorf("--procs: worker %d did not start within %v", i, startTimeout)
		case <-ctx.Done():
			r.kill()
			return nil, ctx.Err()
		}
		w.mu.Lock()
		msg := w.err
		w.mu.Unlock()
		if msg != "" {
			r.kill()
			return nil, fmt.Errorf("worker %d: %s", i, msg)
		}
	}
	go func() {
		for _, w := range r.procs {
			<-w.stopped
		}
		close(r.ch)
	}()
	return r, nil
}

// readLoop reads a worker's lines until it exits.
func (w *workerProc) readLoop(out io.Reader) {
	defer close(w.exited)
	defer w.stopOnce.Do(func() { close(w.stopped) })
	defer w.once.Do(func() { close(w.first) })
	br := bufio.NewReaderSize(out, 1<<16)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			var m workerMsg
			if jerr := json.Unmarshal(line, &m); jerr != nil {
				w.setErr("bad line from worker: " + jerr.Error())
			} else {
				w.mu.Lock()
				if m.Progress != nil {
					w.last = *m.Progress
				}
				if m.Result != nil {
					w.result = m.Result
				}
				if m.Error != "" {
					w.err = m.Error
				}
				w.mu.Unlock()
				if m.Stopped {
					w.stopOnce.Do(func() { close(w.stopped) })
				}
				if m.Check != nil {
					select {
					case w.checks <- m:
					default:
					}
				}
			}
			w.once.Do(func() { close(w.first) })
		}
		if err != nil {
			w.cmd.Wait()
			return
		}
	}
}

func (w *workerProc) setErr(s string) {
	w.mu.Lock()
	if w.err == "" {
		w.err = s
	}
	w.mu.Unlock()
}

func (r *workerRun) done() <-chan struct{} { return r.ch }

func (r *workerRun) progress() progress {
	var p progress
	for _, w := range r.procs {
		w.mu.Lock()
		p = p.add(w.last)
		w.mu.Unlock()
	}
	return p
}

// finishGrace is how long workers get to hand in their results after stop,
// and to stop buying or answer a map check.
const finishGrace = 30 * time.Second

// send writes one line to a worker's stdin; a worker that is gone is
// noticed by finish.
func (w *workerProc) send(m coordMsg) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	w.stdin.Write(append(b, '\n'))
}

// stop tells every worker the run is over and waits until each has
// stopped buying (or exited), at most finishGrace.
func (r *workerRun) stop() {
	for _, w := range r.procs {
		w.send(coordMsg{Stop: true})
	}
	timeout := time.After(finishGrace)
	for _, w := range r.procs {
		select {
		case <-w.stopped:
		case <-timeout:
			return
		}
	}
}

// check sends the truth to every worker and merges their answers for this
// round; a worker that does not answer within finishGrace is left out.
func (r *workerRun) check(round int, truth []uint8) mapCheck {
	for _, w := range r.procs {
		w.send(coordMsg{Round: round, Truth: truth})
	}
	var res mapCheck
	timeout := time.After(finishGrace)
	for i, w := range r.procs {
	wait:
		for {
			select {
			case m := <-w.checks:
				if m.Round == round {
					res.add(*m.Check)
					break wait
				}
			case <-w.exited:
				fmt.Fprintf(r.stderr, "loadtest: worker %d exited before the map check\n", i)
				break wait
			case <-timeout:
				fmt.Fprintf(r.stderr, "loadtest: worker %d did not answer the map check within %v\n", i, finishGrace)
				return res
			}
		}
	}
	return res
}

// finish stops every worker (closing its stdin), waits for the results and
// kills, by PID, a worker that does not end in time.
func (r *workerRun) finish() (*stats, int) {
	for _, w := range r.procs {
		w.stdin.Close()
	}
	timeout := time.After(finishGrace)
	for _, w := range r.procs {
		select {
		case <-w.exited:
		case <-timeout:
			w.cmd.Process.Kill()
			<-w.exited
		}
	}
	st := newStats()
	for i, w := range r.procs {
		w.mu.Lock()
		switch {
		case w.result != nil:
			st.merge(*w.result)
		case w.err != "":
			st.fail("worker_failed")
			fmt.Fprintf(r.stderr, "loadtest: worker %d: %s\n", i, w.err)
		default:
			st.fail("worker_failed")
			fmt.Fprintf(r.stderr, "loadtest: worker %d ended without a result (%v)\n", i, exitErr(w.cmd))
		}
		w.mu.Unlock()
	}
	return st, len(r.procs)
}

func exitErr(cmd *exec.Cmd) error {
	if cmd.ProcessState == nil {
		return errors.New("not started")
	}
	return errors.New(cmd.ProcessState.String())
}

// kill ends the workers started so far (start failed half-way), by PID,
// and reaps them.
func (r *workerRun) kill() {
	for _, w := range r.procs {
		w.stdin.Close()
		w.cmd.Process.Kill()
	}
	for _, w := range r.procs {
		<-w.exited
	}
}
