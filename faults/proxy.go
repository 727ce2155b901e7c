package faults

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a small TCP fault proxy: it forwards every connection accepted on
// its listener to a target address and breaks that path on demand, like
// Toxiproxy but with no dependency. The suite puts one between every
// `seatmap serve` and Redis, and one between every server and Postgres.
//
// Faults, each safe to change at any time from any goroutine:
//
//   - SetLatency delays every chunk, in both directions, by a fixed time
//     (ordering and pipelining are kept: a chunk is held until its own
//     arrival time plus the latency, not behind the previous chunk's delay);
//   - Reset drops every open connection with a TCP RST on both sides, as a
//     crashed middlebox or a failover would; new connections are accepted;
//   - Blackhole(true) stops delivering anything: bytes already read are held
//     and new connections are accepted but not connected upstream, as in a
//     network partition where TCP keeps retransmitting. Blackhole(false)
//     heals it and delivers what was held, in order, unless an end gave up
//     and closed meanwhile (which closes the other end too).
//
// A Proxy is safe for concurrent use. Close stops it and drops every
// connection.
type Proxy struct {
	ln     net.Listener
	target string

	latency atomic.Int64 // nanoseconds

	mu     sync.Mutex
	links  map[*link]struct{}
	healed chan struct{} // closed when the blackhole in force ends; nil when none
	closed bool
	wg     sync.WaitGroup

	accepted atomic.Int64
	resets   atomic.Int64

	// What went wrong on the proxy's own side, for a failed scenario's
	// report (Health): accept and upstream dial failures, and the slowest
	// upstream dial.
	healthMu    sync.Mutex
	acceptErrs  int64
	lastAccept  error
	dialErrs    int64
	lastDial    error
	slowestDial time.Duration
}

// link is one proxied connection: the client's side and the target's.
type link struct {
	dead chan struct{} // closed by close

	mu             sync.Mutex
	client, server net.Conn
	done           bool
}

func newLink(client net.Conn) *link { return &link{client: client, dead: make(chan struct{})} }

// attach records the upstream connection; false (and server closed) if the
// link was dropped meanwhile.
func (l *link) attach(server net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		server.Close()
		return false
	}
	l.server = server
	return true
}

// close closes both sides once; with rst, each with SO_LINGER 0 so the
// peers see a reset rather than an orderly end.
func (l *link) close(rst bool) {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return
	}
	l.done = true
	conns := []net.Conn{l.client, l.server}
	l.mu.Unlock()
	close(l.dead)
	for _, c := range conns {
		if c == nil {
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && rst {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

// NewProxy listens on listen (such as "127.0.0.1:0") and forwards to target.
func NewProxy(listen, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the proxy's listen address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// SetLatency sets the delay added to every chunk in each direction (0 turns
// it off).
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Blackhole starts (on) or heals (off) a partition; see Proxy.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.healed == nil:
		p.healed = make(chan struct{})
	case !on && p.healed != nil:
		close(p.healed)
		p.healed = nil
	}
}

// Reset drops every open connection with a reset on both sides and returns
// how many it dropped.
func (p *Proxy) Reset() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close(true)
	}
	p.resets.Add(int64(len(links)))
	return len(links)
}

// Open returns the number of connections being proxied now.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Stats returns how many connections were accepted and reset so far.
func (p *Proxy) Stats() (accepted, reset int64) { return p.accepted.Load(), p.resets.Load() }

// Health describes the proxy's own side in one line: connections accepted,
// open now and, of those, not yet connected upstream; whether a blackhole
// is on; accept and upstream dial failures (with the last error); and the
// slowest upstream dial. A scenario logs it when a server cannot connect
// through the proxy, to tell a stuck proxy from a stuck target.
func (p *Proxy) Health() string {
	p.mu.Lock()
	open, waiting, blackhole := len(p.links), 0, p.healed != nil
	for l := range p.links {
		l.mu.Lock()
		if l.server == nil {
			waiting++
		}
		l.mu.Unlock()
	}
	p.mu.Unlock()
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	s := fmt.Sprintf("proxy %s → %s: %d accepted, %d open (%d not connected upstream), %d accept errors, %d dial errors, slowest dial %v",
		p.Addr(), p.target, p.accepted.Load(), open, waiting, p.acceptErrs, p.dialErrs, p.slowestDial.Round(time.Millisecond))
	if blackhole {
		s += ", blackhole on"
	}
	if p.lastAccept != nil {
		s += fmt.Sprintf("; last accept error: %v", p.lastAccept)
	}
	if p.lastDial != nil {
		s += fmt.Sprintf("; last dial error: %v", p.lastDial)
	}
	return s
}

// noteDial records one upstream dial: how long it took and how it failed.
func (p *Proxy) noteDial(took time.Duration, err error) {
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	p.slowestDial = max(p.slowestDial, took)
	if err != nil {
		p.dialErrs++
		p.lastDial = err
	}
}

// Close stops accepting, drops every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	if p.healed != nil {
		close(p.healed)
		p.healed = nil
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.Reset()
	p.wg.Wait()
	return err
}

// gate returns a channel that is closed when chunks may flow (nil: now).
func (p *Proxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.healed
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or similar: back off briefly.
			p.healthMu.Lock()
			p.acceptErrs++
			p.lastAccept = err
			p.healthMu.Unlock()
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.accepted.Add(1)
		l := newLink(c)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(l)
	}
}

// serve connects l upstream (after any blackhole heals) and pumps both ways
// until either side ends, then closes both.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		l.close(false)
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	if g := p.gate(); g != nil {
		select {
		case <-g:
		case <-l.dead:
			return
		}
	}
	start := time.Now()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	p.noteDial(time.Since(start), err)
	if err != nil || !l.attach(server) {
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.pump(l, l.client, server); done <- struct{}{} }()
	go func() { p.pump(l, server, l.client); done <- struct{}{} }()
	<-done
	l.close(false)
	<-done
}

// chunk is bytes read from one side and when.
type chunk struct {
	b  []byte
	at time.Time
}

// pump copies src to dst through the faults: a reader goroutine stamps each
// chunk with its arrival, this goroutine holds it until arrival+latency and
// any blackhole has healed, then writes it. It returns when either side
// fails or the link is dropped.
func (p *Proxy) pump(l *link, src, dst net.Conn) {
	ch := make(chan chunk, 256)
	go func() {
		defer close(ch)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				b := make([]byte, n)
				copy(b, buf[:n])
				select {
				case ch <- chunk{b: b, at: time.Now()}:
				case <-l.dead:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		l.close(false) // unblocks the reader
		for range ch {
		}
	}()
	for c := range ch {
		if d := time.Duration(p.latency.Load()); d > 0 {
			if wait := time.Until(c.at.Add(d)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-l.dead:
					t.Stop()
					return
				}
			}
		}
		if g := p.gate(); g != nil {
			select {
			case <-g:
			case <-l.dead:
				return
			}
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}
