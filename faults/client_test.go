//go:build faults

package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// reply is one HTTP exchange as a client sees it.
type reply struct {
	status int    // 0 when there was no response
	code   string // the JSON error code, or refused / timeout / network
	body   []byte
}

// indeterminate reports whether the request's effect is unknown.
func (r reply) indeterminate() bool {
	switch {
	case r.code == "refused":
		return false
	case r.status == 0:
		return true // timeout, reset, EOF
	case r.status >= 500:
		return true // 503 unavailable: a backend failed, maybe half-way
	case r.code == "idempotency_conflict" && strings.Contains(string(r.body), "in progress"):
		return true // the original request with this key is still running
	}
	return false
}

// fan is one simulated fan: its own cookie jar (its session), the servers
// it may talk to (it moves to the next one when its server refuses or
// fails, as behind a load balancer) and its live seat map.
type fan struct {
	n   int
	c   *cluster
	ev  *event
	h   *history
	hc  *http.Client
	jar *cookiejar.Jar
	rng *lockedRand
	srv atomic.Int32 // index into c.servers

	mu       sync.Mutex
	sessions map[string]bool // every fan id the server's cookies gave this fan
	held     map[string]bool // seats a hold op answered ok or unknown for
	bought   int             // seats in ok orders
	keyN     int

	live *liveMap
}

// newFan makes fan n, starting on server n mod servers.
func newFan(c *cluster, ev *event, h *history, n int) *fan {
	jar, _ := cookiejar.New(nil)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	f := &fan{n: n, c: c, ev: ev, h: h, jar: jar, held: map[string]bool{}, sessions: map[string]bool{},
		hc:  &http.Client{Jar: jar, Transport: tr},
		rng: &lockedRand{r: rand.New(rand.NewPCG(uint64(n), uint64(time.Now().UnixNano())))}}
	f.srv.Store(int32(n % len(c.servers)))
	return f
}

// lockedRand is a rand.Rand safe for concurrent use: a fan's goroutines
// (buyer, socket, admission) share one.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) IntN(n int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.IntN(n)
}

func (l *lockedRand) Int64N(n int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Int64N(n)
}

func (l *lockedRand) Uint32() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Uint32()
}

func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

// server returns the fan's current server.
func (f *fan) server() *server { return f.c.servers[int(f.srv.Load())%len(f.c.servers)] }

// failover moves the fan to the next server.
func (f *fan) failover() { f.srv.Add(1) }

// sessionID returns the fan id the server gave this fan (the part of the
// signed seatmap_sid cookie before the signature), or "".
func (f *fan) sessionID() string {
	u, _ := url.Parse(f.c.servers[0].URL())
	for _, ck := range f.jar.Cookies(u) {
		if ck.Name == "seatmap_sid" {
			if i := strings.LastIndexByte(ck.Value, '.'); i > 0 {
				return ck.Value[:i]
			}
		}
	}
	return ""
}

// noteSession records the fan's current session id.
func (f *fan) noteSession() {
	if sid := f.sessionID(); sid != "" {
		f.mu.Lock()
		f.sessions[sid] = true
		f.mu.Unlock()
	}
}

// sessionList returns every session id the fan has had.
func (f *fan) sessionList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedKeys(f.sessions)
}

// do sends one JSON request to the fan's current server within timeout.
func (f *fan) do(ctx context.Context, srv *server, method, path string, body any, timeout time.Duration, hdr ...string) reply {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Go's transport replays a request carrying an Idempotency-Key on a
	// fresh connection when a reused one breaks: a final "connection
	// refused" then hides that an earlier attempt may have been sent.
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	})
	req, err := http.NewRequestWithContext(ctx, method, srv.URL()+path, rd)
	if err != nil {
		return reply{code: "bad_request"}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		code := netCode(err)
		if code == "refused" && wrote.Load() {
			code = "network" // an earlier attempt was written: unknown
		}
		return reply{code: code}
	}
	defer resp.Body.Close()
	f.noteSession()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return reply{code: netCode(err)} // the answer was lost
	}
	r := reply{status: resp.StatusCode, body: data}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			r.code = e.Error
		} else {
			r.code = fmt.Sprintf("http_%d", resp.StatusCode)
		}
	}
	return r
}

// netCode classifies a transport error.
func netCode(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "network"
}

// admit joins the waiting room and polls until admitted (or ctx ends).
// Refused and failed requests move the fan to another server.
func (f *fan) admit(ctx context.Context) error {
	o := f.h.invoke(f.n, "join", "")
	for tries := 0; ctx.Err() == nil && tries < 2000; tries++ {
		srv := f.server()
		o.Server = srv.name
		method := "POST"
		if tries > 0 && tries%10 != 0 {
			method = "GET" // poll; re-join now and then (a flushed Redis forgets the fan)
		}
		r := f.do(ctx, srv, method, "/api/events/"+f.ev.ID+"/queue", nil, 10*time.Second)
		if r.status == 200 || r.status == 202 {
			var st struct {
				State string `json:"state"`
			}
			json.Unmarshal(r.body, &st)
			switch st.State {
			case "admitted":
				o.Status = r.status
				f.h.complete(o, outcomeOK)
				return nil
			case "none":
				f.do(ctx, srv, "POST", "/api/events/"+f.ev.ID+"/queue", nil, 10*time.Second)
			}
		} else if r.status == 0 || r.status >= 500 {
			f.failover()
		}
		sleepCtx(ctx, 100*time.Millisecond+time.Duration(f.rng.IntN(100))*time.Millisecond)
	}
	o.Code = "gave_up"
	f.h.complete(o, outcomeFail)
	return fmt.Errorf("fan %d: not admitted", f.n)
}

// hold asks for seats; it returns the op (outcome and code set).
func (f *fan) hold(ctx context.Context, seats []string) *op {
	srv := f.server()
	o := f.h.invoke(f.n, "hold", srv.name)
	o.Seats = seats
	r := f.do(ctx, srv, "POST", "/api/events/"+f.ev.ID+"/holds", map[string]any{"seats": seats}, 10*time.Second)
	o.Status, o.Code = r.status, r.code
	switch {
	case r.status == http.StatusCreated:
		f.h.complete(o, outcomeOK)
	case r.indeterminate():
		f.h.complete(o, outcomeUnknown)
	default:
		f.h.complete(o, outcomeFail)
	}
	if o.Outcome != outcomeFail {
		f.mu.Lock()
		for _, s := range seats {
			f.held[s] = true
		}
		f.mu.Unlock()
	}
	if r.status == 0 || r.status >= 500 {
		f.failover()
	}
	return o
}

// newKey returns a fresh Idempotency-Key, unique in the whole run.
func (f *fan) newKey() string {
	f.mu.Lock()
	f.keyN++
	n := f.keyN
	f.mu.Unlock()
	return fmt.Sprintf("f%d-%d-%08x", f.n, n, f.rng.Uint32())
}

// checkoutBody is the body every attempt of one key sends.
func checkoutBody(card string, fanN int) map[string]string {
	return map[string]string{"card": card, "email": fmt.Sprintf("fan%d@example.com", fanN)}
}

// checkout sends one checkout attempt with key and records it.
func (f *fan) checkout(ctx context.Context, key, card string, timeout time.Duration, final bool) *op {
	srv := f.server()
	o := f.h.invoke(f.n, "checkout", srv.name)
	o.Key, o.Card, o.Final = key, card, final
	r := f.do(ctx, srv, "POST", "/api/events/"+f.ev.ID+"/checkout", checkoutBody(card, f.n), timeout, "Idempotency-Key", key)
	o.Status, o.Code = r.status, r.code
	switch {
	case r.status == http.StatusCreated:
		var ord struct {
			OrderID    string   `json:"order_id"`
			Status     string   `json:"status"`
			Seats      []string `json:"seats"`
			TotalCents int64    `json:"total_cents"`
		}
		if err := json.Unmarshal(r.body, &ord); err != nil || ord.OrderID == "" {
			o.Code = "bad_body"
			f.h.complete(o, outcomeUnknown)
			break
		}
		o.OrderID, o.Seats, o.Total = ord.OrderID, ord.Seats, ord.TotalCents
		f.h.complete(o, outcomeOK)
		f.mu.Lock()
		f.bought += len(ord.Seats)
		f.mu.Unlock()
	case r.indeterminate():
		f.h.complete(o, outcomeUnknown)
	default:
		f.h.complete(o, outcomeFail)
	}
	if r.status == 0 || r.status >= 500 {
		f.failover()
	}
	return o
}

// resolveKey looks up a checkout whose outcome is unknown the only
// allowed way: by retrying it with the same key and body until the answer
// is definite. It re-admits the fan first when needed (a flushed Redis
// forgets admissions). A 503 `unavailable` replayed three times while the
// server is ready is the stored answer of a checkout the recovery worker
// failed (nothing charged): it is recorded as the definite failure
// "unavailable_stored".
func (f *fan) resolveKey(ctx context.Context, key, card string, deadline time.Time) *op {
	var last *op
	stored := 0
	for tries := 0; tries < 200 && time.Now().Before(deadline) && ctx.Err() == nil; tries++ {
		last = f.checkout(ctx, key, card, 20*time.Second, true)
		switch {
		case last.Outcome == outcomeOK:
			return last
		case last.Outcome == outcomeFail && last.Code == "not_admitted":
			if err := f.admit(ctx); err != nil {
				return last
			}
			continue
		case last.Outcome == outcomeFail && last.Code == "rate_limited":
			sleepCtx(ctx, time.Second)
			continue
		case last.Outcome == outcomeFail:
			return last
		case last.Status == 503 && last.Code == "unavailable" && last.Server != "" && f.c.serverByName(last.Server).ready(2*time.Second) == 200:
			stored++
			if stored >= 3 {
				o := f.h.invoke(f.n, "checkout", last.Server)
				o.Key, o.Card, o.Final, o.Code, o.Status = key, card, true, "unavailable_stored", 503
				f.h.complete(o, outcomeFail)
				return o
			}
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
	return last
}

func (c *cluster) serverByName(name string) *server {
	for _, s := range c.servers {
		if s.name == name {
			return s
		}
	}
	return c.servers[0]
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// wsMsg is any message of the fan socket (API.md "Real-time channel").
type wsMsg struct {
	Type    string            `json:"type"`
	Seq     uint64            `json:"seq"`
	Seats   map[string]string `json:"seats"`
	Mine    []string          `json:"mine"`
	Changes []struct {
		Seat  string `json:"seat"`
		State string `json:"state"`
		Mine  bool   `json:"mine"`
	} `json:"changes"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// wsURL returns the fan socket's URL on srv.
func wsURL(srv *server, eventID string) string {
	return "ws://" + srv.addr + "/api/events/" + eventID + "/ws"
}

// liveMap is a fan's live seat map over the JSON socket: a snapshot, then
// seq-numbered changes; a gap, a close or an error reconnects (which brings
// a fresh snapshot), as API.md asks of clients.
type liveMap struct {
	f *fan

	mu         sync.Mutex
	seats      map[string]string
	seq        uint64
	have       bool
	snapshots  int
	gaps       int
	reconnects int
	closes     map[string]int // close reasons seen
	onChange   func(seat, state string, at time.Time)

	cancel context.CancelFunc
	done   chan struct{}
}

// openLiveMap starts the fan's socket loop; it runs until close.
func (f *fan) openLiveMap(onChange func(seat, state string, at time.Time)) *liveMap {
	ctx, cancel := context.WithCancel(context.Background())
	m := &liveMap{f: f, seats: map[string]string{}, closes: map[string]int{}, onChange: onChange, cancel: cancel, done: make(chan struct{})}
	f.live = m
	go m.run(ctx)
	return m
}

func (m *liveMap) run(ctx context.Context) {
	defer close(m.done)
	for n := 0; ctx.Err() == nil && n < 100000; n++ {
		srv := m.f.server()
		err := m.session(ctx, srv)
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		m.reconnects++
		m.closes[closeReason(err)]++
		m.mu.Unlock()
		if websocket.CloseStatus(err) == -1 && !errors.Is(err, errGap) {
			m.f.failover() // the server is gone or failed: try another
		}
		sleepCtx(ctx, 100*time.Millisecond+time.Duration(m.f.rng.IntN(200))*time.Millisecond)
	}
}

var errGap = errors.New("seq gap")

func closeReason(err error) string {
	if errors.Is(err, errGap) {
		return "seq_gap"
	}
	if st := websocket.CloseStatus(err); st != -1 {
		return fmt.Sprintf("close_%d", int(st))
	}
	return "dropped"
}

// session runs one socket until it fails. Opening the socket joins the
// waiting room (API.md), so each session is a join in the history: ok when
// the socket is admitted, unknown when it ends before (the fan may be
// admitted later from the place it took).
func (m *liveMap) session(ctx context.Context, srv *server) (err error) {
	join := m.f.h.invoke(m.f.n, "join", srv.name)
	admitted := false
	defer func() {
		if !admitted {
			join.Code = closeReason(err)
			m.f.h.complete(join, outcomeUnknown)
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, _, err := websocket.Dial(dctx, wsURL(srv, m.f.ev.ID), &websocket.DialOptions{HTTPClient: m.f.hc})
	cancel()
	if err != nil {
		return err
	}
	m.f.noteSession()
	defer conn.CloseNow()
	conn.SetReadLimit(16 << 20)
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		var msg wsMsg
		if err := json.Unmarshal(data, &msg); err != nil {
			return err
		}
		if !admitted && (msg.Type == "admitted" || msg.Type == "snapshot") {
			admitted = true
			m.f.h.complete(join, outcomeOK)
		}
		if err := m.apply(&msg, now); err != nil {
			conn.Close(websocket.StatusNormalClosure, "resync")
			return err
		}
	}
}

// apply applies one message to the map.
func (m *liveMap) apply(msg *wsMsg, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch msg.Type {
	case "snapshot":
		m.seats = msg.Seats
		m.seq, m.have = msg.Seq, true
		m.snapshots++
		if m.onChange != nil {
			for seat, st := range msg.Seats {
				m.onChange(seat, st, now)
			}
		}
	case "seats":
		if !m.have {
			return nil
		}
		if msg.Seq != m.seq+1 {
			m.gaps++
			m.have = false
			return errGap
		}
		m.seq = msg.Seq
		for _, ch := range msg.Changes {
			m.seats[ch.Seat] = ch.State
			if m.onChange != nil {
				m.onChange(ch.Seat, ch.State, now)
			}
		}
	}
	return nil
}

// sold returns the seats the map shows sold, sorted; ok is false before
// the first snapshot.
func (m *liveMap) sold() (seats []string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return soldOf(m.seats), m.have
}

// state returns the map's state of every seat.
func (m *liveMap) state() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.seats))
	for k, v := range m.seats {
		out[k] = v
	}
	return out
}

func (m *liveMap) close() {
	m.cancel()
	<-m.done
}

func soldOf(seats map[string]string) []string {
	var out []string
	for s, st := range seats {
		if st == "sold" {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// fetchSnapshot opens a new socket for the fan, waits for its snapshot
// (admission first, if the fan has to queue again) and closes it.
func (f *fan) fetchSnapshot(ctx context.Context, srv *server) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, wsURL(srv, f.ev.ID), &websocket.DialOptions{HTTPClient: f.hc})
	if err != nil {
		return nil, err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(16 << 20)
	for i := 0; i < 10000; i++ {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		var msg wsMsg
		if err := json.Unmarshal(data, &msg); err != nil {
			return nil, err
		}
		if msg.Type == "snapshot" {
			conn.Close(websocket.StatusNormalClosure, "done")
			return msg.Seats, nil
		}
	}
	return nil, errors.New("no snapshot")
}
