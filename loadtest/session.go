package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// env is what every fan of one process shares.
type env struct {
	cfg *Config
	cl  *client
	v   *venue
	st  *stats
	pr  *probe
	// frames decodes each distinct seat frame once for all the fans.
	frames *frameCache
	seed   uint64
	share  share

	// Sockets outlive the run (its ctx): fans still on the page when it
	// ends keep listening for the map check until closeSockets.
	linger     context.Context
	stopLinger context.CancelFunc
	sockMu     sync.Mutex
	sockClosed bool
	sockets    sync.WaitGroup
	watchMu    sync.Mutex
	watchers   []*session // fans whose maps the check compares

	nextSrv atomic.Uint64 // round-robin over the servers for fans made on the go
}

// newEnv returns a process's env; its sockets may outlive ctx's
// cancellation until closeSockets.
func newEnv(ctx context.Context, cfg *Config, cl *client, v *venue, st *stats, seed uint64, sh share) *env {
	e := &env{cfg: cfg, cl: cl, v: v, st: st, seed: seed, share: sh, frames: newFrameCache()}
	e.linger, e.stopLinger = context.WithCancel(context.WithoutCancel(ctx))
	e.nextSrv.Store(uint64(sh.index))
	return e
}

// servers returns how many servers the fans are spread over.
func (e *env) servers() int { return max(1, len(e.cfg.URLs)) }

// fanServer returns the server of the fan with global index g (round-robin).
func (e *env) fanServer(g int) int { return g % e.servers() }

// anyServer returns the next server in this process's round-robin, for
// fans made on the go (closed-loop workers' fans).
func (e *env) anyServer() int { return int((e.nextSrv.Add(1) - 1) % uint64(e.servers())) }

// openSocket runs s's socket in the background until s.stop, a failure, or
// closeSockets; ctx is the run's (errors after it ended are not counted).
// onEnd is called when the socket is gone for good. It reports false (and
// starts nothing) once closeSockets has begun.
func (e *env) openSocket(ctx context.Context, s *session, onEnd func()) bool {
	e.sockMu.Lock()
	if e.sockClosed {
		e.sockMu.Unlock()
		return false
	}
	e.sockets.Add(1)
	e.sockMu.Unlock()
	go func() {
		defer e.sockets.Done()
		if err := s.run(e.linger); err != nil {
			e.st.fail(errCode(ctx, err))
		}
		onEnd()
	}()
	return true
}

// watch keeps s for the map check: the fan stays on the page after the run.
func (e *env) watch(s *session) {
	e.watchMu.Lock()
	e.watchers = append(e.watchers, s)
	e.watchMu.Unlock()
}

// closeSockets closes every socket still open (after the map check) and
// waits for them, at most closeWait.
func (e *env) closeSockets() {
	e.sockMu.Lock()
	e.sockClosed = true
	e.sockMu.Unlock()
	e.stopLinger()
	done := make(chan struct{})
	go func() { e.sockets.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
	}
}

// closeWait bounds how long closeSockets waits for the sockets to close.
const closeWait = 15 * time.Second

// share is this process's part of the run.
type share struct {
	index, count int     // process index and number of processes
	fans         int     // drop, idle
	fanBase      int     // drop, idle: global index of this process's first fan
	joinRate     float64 // drop, idle
	workers      int     // holds, checkout: closed-loop workers here
	workerBase   int     // global index of this process's first worker
	workersAll   int     // closed-loop workers in all processes
	rate         float64 // holds, checkout: attempts per second here
	buyers       int     // idle
}

// splitShare returns process i's share of n processes.
func splitShare(c *Config, i, n int) share {
	part := func(total int) (int, int) { // this part, and the sum of the parts before it
		base, extra := total/n, total%n
		before := i*base + min(i, extra)
		if i < extra {
			return base + 1, before
		}
		return base, before
	}
	s := share{index: i, count: n, joinRate: c.JoinRate / float64(n), rate: c.Rate / float64(n), workersAll: c.Concurrency}
	s.fans, s.fanBase = part(c.Fans)
	s.workers, s.workerBase = part(c.Concurrency)
	if i == 0 {
		s.buyers = c.Buyers
	}
	return s
}

// rng returns a generator for one actor of this process.
func (e *env) rng(actor uint64) *rand.Rand {
	return rand.New(rand.NewPCG(e.seed, uint64(e.share.index)<<40|actor))
}

// retry bounds for joining and dialing.
const (
	maxJoinTries   = 5
	maxDialTries   = 3
	maxReconnects  = 5
	maxBackoff     = 5 * time.Second
	queuePollEvery = 100 * time.Millisecond
)

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff is the wait before try n (0-based) after err: Retry-After when the
// server gave one, else 100 ms doubling, at most maxBackoff.
func backoff(err error, n int) time.Duration {
	var ae *apiError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return min(ae.RetryAfter, maxBackoff)
	}
	return min(100*time.Millisecond<<min(n, 6), maxBackoff)
}

// retryable reports whether a request failing with err may be sent again.
func retryable(err error) bool {
	var ae *apiError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Code {
	case "rate_limited", "unavailable", "network", "timeout", "internal":
		return true
	}
	return ae.Status >= 500
}

// session is one fan with an open socket: it joins, connects and reads its
// messages until stopped, keeping (optionally) a live seat map and
// recording (optionally) probe deliveries.
type session struct {
	e        *env
	f        fan
	keepMap  bool // maintain m from snapshots and changes
	listen   bool // record change_to_delivered for probe changes
	probeFan bool // the probe: not counted as an admitted fan

	joined    time.Time
	admitted  atomic.Bool
	live      atomic.Bool // the socket is open and its map is a snapshot plus every batch since
	m         *seatMap
	ready     chan struct{} // closed at the first snapshot
	readyOnce sync.Once

	connMu   sync.Mutex
	conn     *websocket.Conn
	local    string // conn's own address, host:port
	stopping atomic.Bool

	// reader-goroutine state
	seq    uint64
	hasSeq bool
	seen   int64 // newest probe change reported
	recv   int64 // UnixNano the current frame was read
}

func newSession(e *env, keepMap, listen bool) *session {
	s := &session{e: e, keepMap: keepMap, listen: listen, ready: make(chan struct{})}
	if keepMap {
		s.m = newSeatMap(len(e.v.ids))
	}
	return s
}

// markAdmitted records the admission once.
func (s *session) markAdmitted(at time.Time) {
	if s.admitted.CompareAndSwap(false, true) && !s.probeFan {
		s.e.st.admit(at)
		s.e.st.joinToAdmitted.record(at.Sub(s.joined))
	}
}

// join enters the waiting room with retries; the fan gets its cookie here.
func (s *session) join(ctx context.Context) error {
	var err error
	for try := 0; try < maxJoinTries; try++ {
		if try == 0 {
			s.joined = time.Now()
		}
		var q queueStatus
		q, err = s.e.cl.join(ctx, &s.f)
		if err == nil {
			if q.State == "admitted" {
				s.markAdmitted(time.Now())
			}
			return nil
		}
		if !retryable(err) || !sleep(ctx, backoff(err, try)) {
			break
		}
	}
	return err
}

// run connects the fan's socket and reads it until ctx is done, stop is
// called, or the socket fails more than maxReconnects times. It returns
// nil when stopped or when ctx ended.
func (s *session) run(ctx context.Context) error {
	st := s.e.st
	for reconnects := 0; ; reconnects++ {
		conn, err := s.dial(ctx)
		if err != nil {
			return err
		}
		st.connected.Add(1)
		// Read with a context that has no Done channel, and close the
		// socket when ctx ends instead: given one with, coder/websocket
		// arms and disarms a context.AfterFunc for every message, a fifth
		// of the load generator's CPU with 10,000 listening fans (issue 7).
		unwatch := context.AfterFunc(ctx, func() { conn.CloseNow() })
		err = s.read(context.WithoutCancel(ctx), conn)
		unwatch()
		s.live.Store(false)
		st.connected.Add(-1)
		conn.CloseNow()
		if s.stopping.Load() || ctx.Err() != nil {
			return nil
		}
		st.fail(readErrCode(err))
		if reconnects >= maxReconnects || !sleep(ctx, backoff(err, reconnects)) {
			return err
		}
	}
}

func (s *session) dial(ctx context.Context) (*websocket.Conn, error) {
	var err error
	for try := 0; try < maxDialTries; try++ {
		var (
			conn  *websocket.Conn
			local string
		)
		conn, local, err = s.e.cl.dial(ctx, &s.f)
		if err == nil {
			s.connMu.Lock()
			s.conn, s.local = conn, local
			stopping := s.stopping.Load()
			s.connMu.Unlock()
			if stopping {
				conn.CloseNow()
				return nil, context.Canceled
			}
			s.hasSeq = false
			return conn, nil
		}
		if ctx.Err() != nil || !sleep(ctx, backoff(err, try)) {
			return nil, ctx.Err()
		}
	}
	return nil, err
}

// stop makes the fan leave: its socket is closed normally and run returns.
func (s *session) stop() {
	s.connMu.Lock()
	s.stopping.Store(true)
	conn := s.conn
	s.connMu.Unlock()
	if conn != nil {
		conn.Close(websocket.StatusNormalClosure, "fan left")
	}
}

// badFrameOnce logs the first undecodable frame of a process.
var badFrameOnce sync.Once

// Errors that make the reader reconnect.
var (
	errSeqGap   = errors.New("seq gap")
	errBadFrame = errors.New("bad frame")
)

func readErrCode(err error) string {
	switch {
	case errors.Is(err, errSeqGap):
		return "seq_gap"
	case errors.Is(err, errBadFrame):
		return "bad_frame"
	}
	switch websocket.CloseStatus(err) {
	case -1:
		return "ws_read"
	case websocket.StatusPolicyViolation:
		return "ws_closed_policy" // slow consumer
	case websocket.StatusGoingAway:
		return "ws_closed_going_away"
	case websocket.StatusTryAgainLater:
		return "ws_closed_try_later"
	default:
		return "ws_closed"
	}
}

// frameBufs are the buffers fans read frames into. A channel, not a
// sync.Pool: every garbage collection empties a pool (within two), and a
// drop's load generator collects several times a second, so each ~220 KB
// snapshot used to grow a new buffer from nothing; clearing that memory
// (bytes.growSlice) was 10 % of a worker's CPU. A channel keeps its buffers
// through collections; it holds at most frameBufCount of them, none larger
// than maxFrameBuf.
var frameBufs = make(chan *bytes.Buffer, frameBufCount)

const (
	frameBufCount = 256
	maxFrameBuf   = 1 << 20
)

// getFrameBuf returns an empty buffer, a kept one when there is one.
func getFrameBuf() *bytes.Buffer {
	select {
	case b := <-frameBufs:
		b.Reset()
		return b
	default:
		return new(bytes.Buffer)
	}
}

// putFrameBuf keeps b for another frame, unless it is too large or enough
// are kept already.
func putFrameBuf(b *bytes.Buffer) {
	if b.Cap() > maxFrameBuf {
		return
	}
	select {
	case frameBufs <- b:
	default:
	}
}

// read handles frames until the socket fails.
func (s *session) read(ctx context.Context, conn *websocket.Conn) error {
	for {
		typ, r, err := conn.Reader(ctx)
		if err != nil {
			return err
		}
		buf := getFrameBuf()
		_, err = buf.ReadFrom(r)
		s.recv = time.Now().UnixNano()
		if err == nil && typ == websocket.MessageText {
			err = s.handle(buf.Bytes())
			if errors.Is(err, errBadFrame) && !s.stopping.Load() {
				badFrameOnce.Do(func() {
					fmt.Fprintf(os.Stderr, "loadtest: a frame could not be decoded (%v), %d bytes: %.300q\n", err, buf.Len(), buf.Bytes())
				})
			}
		}
		putFrameBuf(buf)
		if err != nil {
			return err
		}
	}
}

// handle applies one frame.
func (s *session) handle(b []byte) error {
	d, err := s.e.frames.decode(b, s.e.v)
	if err != nil {
		return errors.Join(errBadFrame, err)
	}
	h := d.h
	switch h.typ {
	case msgAdmitted:
		s.markAdmitted(time.Unix(0, s.recv))
	case msgSnapshot:
		s.markAdmitted(time.Unix(0, s.recv))
		s.seq, s.hasSeq = h.seq, true
		if s.m != nil {
			s.m.mu.Lock()
			clear(s.m.states)
			for _, x := range d.seats {
				s.m.states[x.i] = x.state
			}
			s.m.noteFrame(h.seq, s.recv)
			s.m.mu.Unlock()
		}
		if s.e.pr != nil {
			s.seen = s.e.pr.newest()
		}
		s.live.Store(true)
		s.readyOnce.Do(func() { close(s.ready) })
		if s.m != nil {
			s.m.notify()
		}
	case msgSeats:
		if s.hasSeq && h.seq != s.seq+1 {
			return errSeqGap
		}
		s.seq, s.hasSeq = h.seq, true
		s.applyChanges(h.seq, d.seats)
		if s.m != nil {
			s.m.notify()
		}
	case msgError:
		s.e.st.fail("ws_" + h.code)
	}
	return nil
}

// applyChanges puts a batch's changes into the fan's map and, for a
// listener, matches them against the probe's changes.
func (s *session) applyChanges(seq uint64, changes []decodedSeat) {
	if s.m != nil {
		s.m.mu.Lock()
		for _, x := range changes {
			s.m.states[x.i] = x.state
		}
		s.m.noteFrame(seq, s.recv)
		s.m.mu.Unlock()
	}
	if s.listen && s.e.pr != nil {
		for _, x := range changes {
			if d, ok := s.e.pr.match(x.i, x.state, s.recv, &s.seen); ok {
				s.e.st.delivered.record(d)
			}
		}
	}
}

// waitReady waits for the first snapshot.
func (s *session) waitReady(ctx context.Context) bool {
	select {
	case <-s.ready:
		return true
	case <-ctx.Done():
		return false
	}
}
