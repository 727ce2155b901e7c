//go:build faults

package faults

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// server is one `seatmap serve` process on a fixed address, restartable.
type server struct {
	t    testing.TB
	name string
	addr string
	env  []string
	log  string // stderr of every run, appended
	dir  string
	// diagnose, if set, describes the path to the services when a start
	// fails (cluster.diagnose).
	diagnose func() string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

// URL returns the server's base URL.
func (s *server) URL() string { return "http://" + s.addr }

// PID returns the running process's id, or 0.
func (s *server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// start runs the server and waits until it prints that it serves.
func (s *server) start() error {
	cmd := exec.Command(suite.bin, "serve", "--addr", s.addr)
	cmd.Env = s.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== start %d at %s\n", s.starts+1, time.Now().Format(time.RFC3339Nano))
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "seatmap serving on ") {
				once.Do(func() { close(serving) })
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	writePID(filepath.Join(s.dir, "server-"+s.name+".pid"), cmd.Process.Pid)
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.starts++
	s.mu.Unlock()
	select {
	case <-serving:
		return nil
	case <-done:
		return fmt.Errorf("server %s exited at start:\n%s", s.name, tail(s.log, 30))
	case <-time.After(30 * time.Second):
		return fmt.Errorf("server %s did not start within 30s:\n%s", s.name, tail(s.log, 30))
	}
}

// restartPatience is how long restart keeps trying, as a supervisor
// (systemd's Restart=always, RestartSec=1) would.
const restartPatience = time.Minute

// restart starts the server again after a crash, as a supervisor would:
// attempts a second apart for up to restartPatience (a server whose
// start-up — migrate, connect, all within 5 s — fails on a loaded machine
// exits at once). Each failed attempt is logged with the server's
// diagnosis of the path to its services, if it has one. It returns how
// many attempts failed.
func (s *server) restart() (failed int, err error) {
	deadline := time.Now().Add(restartPatience)
	for {
		if err = s.start(); err == nil {
			return failed, nil
		}
		failed++
		why := lastLine(err.Error())
		if s.diagnose != nil {
			why += s.diagnose()
		}
		s.t.Logf("server %s did not start (attempt %d): %s", s.name, failed, why)
		if time.Now().After(deadline) {
			return failed, err
		}
		time.Sleep(time.Second)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// signal sends sig to the running process (by PID).
func (s *server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return errors.New("not running")
	}
	return cmd.Process.Signal(sig)
}

// kill9 is the fault: SIGKILL, then wait for the process to be gone.
func (s *server) kill9() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop ends the server: SIGCONT (in case it is stopped), SIGTERM, and
// SIGKILL if it has not exited within 15 s.
func (s *server) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGCONT)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// ready returns the status of GET /readyz (0 if it did not answer).
func (s *server) ready(timeout time.Duration) int {
	c := http.Client{Timeout: timeout}
	resp, err := c.Get(s.URL() + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rssKB returns the process's resident set size (VmRSS) in KiB.
func (s *server) rssKB() int64 {
	pid := s.PID()
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// liveHeap forces a garbage collection in the server (GET
// /debug/pprof/heap?gc=1, which needs PPROF=1 and staff credentials) and
// returns the live Go heap afterwards (go_memstats_heap_alloc_bytes), or
// -1.
func (s *server) liveHeap() float64 {
	// Twice: objects in sync.Pools survive one collection.
	for i := 0; i < 2; i++ {
		if s.heapProfile(io.Discard) != nil {
			return -1
		}
	}
	return s.metric("go_memstats_heap_alloc_bytes")
}

// heapProfile writes the server's heap profile (text, after a GC) to w.
func (s *server) heapProfile(w io.Writer) error {
	req, _ := http.NewRequest("GET", s.URL()+"/debug/pprof/heap?gc=1&debug=1", nil)
	req.Header.Set("Authorization", "Bearer "+staffToken)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("heap profile: status %d", resp.StatusCode)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// cpuSeconds returns the process's user+system CPU time.
func (s *server) cpuSeconds() float64 {
	pid := s.PID()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): state is 3rd.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

// metric returns the sum of a Prometheus counter or gauge's samples (all
// label values) from /metrics, or -1.
func (s *server) metric(name string) float64 {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(s.URL() + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
			found = true
		}
	}
	if !found {
		return -1
	}
	return sum
}
