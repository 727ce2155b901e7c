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
	Result   *partial  `json:"result,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// runWorker is a worker process: it runs its share until the deadline or
// until its stdin closes (the coordinator's stop), writing a progress line
// every sampleEvery and one result line at the end.
func runWorker(ctx context.Context, specJSON string, stdin io.Reader, stdout io.Writer) error {
	var spec workerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("loadtest worker: bad spec: %w", err)
	}
	if spec.Count < 1 || spec.Index < 0 || spec.Index >= spec.Count {
		return fmt.Errorf("loadtest worker: index %d of %d", spec.Index, spec.Count)
	}
	cfg := spec.Config
	ctx, cancel := context.WithDeadline(ctx, time.Unix(0, spec.Deadline))
	defer cancel()
	go func() {
		io.Copy(io.Discard, stdin) // EOF: the coordinator says stop
		cancel()
	}()
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	send := func(m workerMsg) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(m)
	}
	e, err := setup(ctx, &cfg, splitShare(&cfg, spec.Index, spec.Count), spec.Seed)
	if err != nil {
		send(workerMsg{Error: err.Error()})
		return fmt.Errorf("loadtest worker %d: %w", spec.Index, err)
	}
	defer e.cl.close()
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
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex
	last   progress
	result *partial
	err    string
	exited chan struct{}
	first  chan struct{} // closed at the first line (or exit)
	once   sync.Once
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
	wcfg.CreateEvent, wcfg.JSON, wcfg.ServerPID, wcfg.Procs = false, false, 0, n
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
		w := &workerProc{cmd: cmd, stdin: stdin, exited: make(chan struct{}), first: make(chan struct{})}
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
			<-w.exited
		}
		close(r.ch)
	}()
	return r, nil
}

// readLoop reads a worker's lines until it exits.
func (w *workerProc) readLoop(out io.Reader) {
	defer close(w.exited)
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

// finishGrace is how long workers get to hand in their results after stop.
const finishGrace = 30 * time.Second

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
