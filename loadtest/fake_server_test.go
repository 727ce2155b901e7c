package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeServer is a small in-memory implementation of the parts of API.md the
// load generator uses, so that its scenarios can be tested without
// Postgres and Redis. With sellTwice set it is broken on purpose: a sale
// leaves the seats available, so they can be sold again. Several
// httptest servers may serve one fakeServer (newFakeCluster), like several
// `seatmap serve` processes on one Redis and Postgres; with loseSoldOn set,
// the sockets of that server (1-based) never hear of a sale, like a process
// whose keyspace listener lost the outbox stream.
type fakeServer struct {
	sellTwice  bool
	loseSoldOn int
	staff      string
	admitWait  time.Duration

	mu      sync.Mutex
	event   string
	seats   []string
	section map[string]int // seat → section index
	rows    [][]string     // seats per row, with their section
	rowSec  []int
	state   map[string]string // seat → available | held | sold
	holder  map[string]string // seat → fan holding it
	joined  map[string]time.Time
	orders  map[string]fakeOrder // fan + "/" + key → order
	nextFan int
	nextOrd int
	seq     uint64
	pending map[string]string // seat → state, changed since the last push
	conns   map[*fakeConn]bool
	closed  bool

	statsCalls int
	sockets    map[int]int // sockets accepted per server index
}

type fakeOrder struct {
	body  string
	seats []string
}

type fakeConn struct {
	fan  string
	srv  int // index of the server the socket came through
	send chan []byte
}

// fakeSrvKey is the request context key of the server index.
type fakeSrvKey struct{}

func newFakeServer(t *testing.T, sellTwice bool) (*fakeServer, *httptest.Server) {
	f, srvs := newFakeCluster(t, 1, func(f *fakeServer) { f.sellTwice = sellTwice })
	return f, srvs[0]
}

// newFakeCluster starts n servers sharing one fakeServer; opt (if not nil)
// sets it up before the first request.
func newFakeCluster(t *testing.T, n int, opt func(*fakeServer)) (*fakeServer, []*httptest.Server) {
	f := &fakeServer{
		staff: "tok", admitWait: 20 * time.Millisecond,
		state: map[string]string{}, holder: map[string]string{}, joined: map[string]time.Time{},
		orders: map[string]fakeOrder{}, pending: map[string]string{}, conns: map[*fakeConn]bool{},
		section: map[string]int{}, sockets: map[int]int{},
	}
	if opt != nil {
		opt(f)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/staff/events", f.createEvent)
	mux.HandleFunc("GET /api/events", f.listEvents)
	mux.HandleFunc("GET /api/staff/events/{event}/stats", f.stats)
	mux.HandleFunc("GET /api/events/{event}", f.eventDetail)
	mux.HandleFunc("POST /api/events/{event}/queue", f.queue)
	mux.HandleFunc("GET /api/events/{event}/queue", f.queue)
	mux.HandleFunc("GET /api/events/{event}/ws", f.socket)
	mux.HandleFunc("POST /api/events/{event}/holds", f.hold)
	mux.HandleFunc("DELETE /api/events/{event}/holds/{seat}", f.release)
	mux.HandleFunc("POST /api/events/{event}/checkout", f.checkout)
	var srvs []*httptest.Server
	for i := range n {
		srvs = append(srvs, httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), fakeSrvKey{}, i)))
		})))
	}
	stop := make(chan struct{})
	go f.pushLoop(stop)
	t.Cleanup(func() {
		close(stop)
		f.mu.Lock()
		f.closed = true
		for c := range f.conns {
			close(c.send)
			delete(f.conns, c)
		}
		f.mu.Unlock()
		for _, srv := range srvs {
			srv.CloseClientConnections()
			srv.Close()
		}
	})
	return f, srvs
}

// socketsOn returns how many sockets server i accepted.
func (f *fakeServer) socketsOn(i int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sockets[i]
}

func fakeErr(w http.ResponseWriter, status int, code string, seats []string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"error": code, "message": code}
	if seats != nil {
		body["seats"] = seats
	}
	json.NewEncoder(w).Encode(body)
}

func fakeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fan returns the request's fan, minting a cookie for a new one.
func (f *fakeServer) fan(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(sidCookie); err == nil && strings.HasPrefix(c.Value, "fan") {
		return c.Value
	}
	f.mu.Lock()
	f.nextFan++
	id := "fan" + strconv.Itoa(f.nextFan)
	f.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sidCookie, Value: id, Path: "/", HttpOnly: true})
	return id
}

func (f *fakeServer) createEvent(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.staff {
		fakeErr(w, 401, "unauthorized", nil)
		return
	}
	var body struct {
		ID       string `json:"id"`
		Sections []struct {
			Rows        int `json:"rows"`
			SeatsPerRow int `json:"seats_per_row"`
		} `json:"sections"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.ID == "" {
		fakeErr(w, 400, "bad_request", nil)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.event = body.ID
	for si, sec := range body.Sections {
		for row := 0; row < sec.Rows; row++ {
			var ids []string
			for n := 0; n < sec.SeatsPerRow; n++ {
				id := fmt.Sprintf("%c-%d-%d", 'A'+si, row+1, n+1)
				ids = append(ids, id)
				f.seats = append(f.seats, id)
				f.section[id] = si
				f.state[id] = "available"
			}
			f.rows = append(f.rows, ids)
			f.rowSec = append(f.rowSec, si)
		}
	}
	w.WriteHeader(http.StatusCreated)
}

func (f *fakeServer) available() int {
	n := 0
	for _, s := range f.state {
		if s != "sold" {
			n++
		}
	}
	return n
}

func (f *fakeServer) listEvents(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fakeJSON(w, 200, []map[string]any{{"id": f.event, "seats_total": len(f.seats), "seats_available": f.available()}})
}

func (f *fakeServer) statsAsked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statsCalls
}

func (f *fakeServer) stats(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.staff {
		fakeErr(w, 401, "unauthorized", nil)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statsCalls++
	held := 0
	for _, st := range f.state {
		if st == "held" {
			held++
		}
	}
	fakeJSON(w, 200, map[string]any{"sold": len(f.seats) - f.available(), "held": held})
}

func (f *fakeServer) eventDetail(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.PathValue("event") != f.event {
		fakeErr(w, 404, "not_found", nil)
		return
	}
	type seat struct {
		ID string `json:"id"`
	}
	type row struct {
		ID    string `json:"id"`
		Seats []seat `json:"seats"`
	}
	type section struct {
		ID   string `json:"id"`
		Rows []row  `json:"rows"`
	}
	var secs []section
	for i, ids := range f.rows {
		si := f.rowSec[i]
		for len(secs) <= si {
			secs = append(secs, section{ID: string(rune('A' + len(secs)))})
		}
		rw := row{ID: strconv.Itoa(i)}
		for _, id := range ids {
			rw.Seats = append(rw.Seats, seat{id})
		}
		secs[si].Rows = append(secs[si].Rows, rw)
	}
	fakeJSON(w, 200, map[string]any{"id": f.event, "seats_total": len(f.seats), "seats_available": f.available(), "sections": secs})
}

func (f *fakeServer) admitted(fan string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.joined[fan]
	return ok && time.Since(t) >= f.admitWait
}

func (f *fakeServer) join(fan string) {
	f.mu.Lock()
	if _, ok := f.joined[fan]; !ok {
		f.joined[fan] = time.Now()
	}
	f.mu.Unlock()
}

func (f *fakeServer) queue(w http.ResponseWriter, r *http.Request) {
	fan := f.fan(w, r)
	if r.Method == http.MethodPost {
		f.join(fan)
	}
	if f.admitted(fan) {
		fakeJSON(w, 200, map[string]any{"state": "admitted", "until": time.Now().Add(time.Hour)})
		return
	}
	fakeJSON(w, 202, map[string]any{"state": "waiting", "position": 1, "ahead": 0, "eta_seconds": 1})
}

func (f *fakeServer) socket(w http.ResponseWriter, r *http.Request) {
	fan := f.fan(w, r)
	f.join(fan)
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx := conn.CloseRead(r.Context())
	write := func(b []byte) bool {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return conn.Write(wctx, websocket.MessageText, b) == nil
	}
	if !write([]byte(`{"type":"queue","position":1,"ahead":0,"eta_seconds":1}`)) {
		return
	}
	for !f.admitted(fan) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
	if !write([]byte(`{"type":"admitted","until":"2099-01-01T00:00:00Z"}`)) {
		return
	}
	srv, _ := r.Context().Value(fakeSrvKey{}).(int)
	c := &fakeConn{fan: fan, srv: srv, send: make(chan []byte, 256)}
	f.mu.Lock()
	f.sockets[srv]++
	if f.closed {
		f.mu.Unlock()
		return
	}
	snap, _ := json.Marshal(map[string]any{"type": "snapshot", "seq": f.seq, "seats": f.state, "mine": []string{}})
	f.conns[c] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.conns[c] {
			delete(f.conns, c)
		}
		f.mu.Unlock()
	}()
	if !write(snap) {
		return
	}
	for {
		select {
		case b, ok := <-c.send:
			if !ok || !write(b) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// pushLoop sends the changes of each 10 ms to every socket, seq-numbered.
func (f *fakeServer) pushLoop(stop chan struct{}) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		f.mu.Lock()
		if len(f.pending) > 0 && !f.closed {
			f.seq++
			changes, lossy := []map[string]any{}, []map[string]any{}
			for seat, st := range f.pending {
				ch := map[string]any{"seat": seat, "state": st, "mine": false}
				changes = append(changes, ch)
				if st != "sold" {
					lossy = append(lossy, ch)
				}
			}
			full, _ := json.Marshal(map[string]any{"type": "seats", "seq": f.seq, "changes": changes})
			lost, _ := json.Marshal(map[string]any{"type": "seats", "seq": f.seq, "changes": lossy})
			for c := range f.conns {
				b := full
				if c.srv+1 == f.loseSoldOn {
					b = lost
				}
				select {
				case c.send <- b:
				default: // slow consumer: drop it, like the real hub
					close(c.send)
					delete(f.conns, c)
				}
			}
			clear(f.pending)
		}
		f.mu.Unlock()
	}
}

func (f *fakeServer) set(seat, st string) {
	f.state[seat] = st
	f.pending[seat] = st
}

func (f *fakeServer) hold(w http.ResponseWriter, r *http.Request) {
	fan := f.fan(w, r)
	if !f.admitted(fan) {
		fakeErr(w, 403, "not_admitted", nil)
		return
	}
	var body struct {
		Seats []string `json:"seats"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Seats) == 0 {
		fakeErr(w, 400, "bad_request", nil)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var taken []string
	for _, s := range body.Seats {
		st, ok := f.state[s]
		if !ok {
			fakeErr(w, 422, "invalid_seat", nil)
			return
		}
		if st != "available" && f.holder[s] != fan {
			taken = append(taken, s)
		}
	}
	if len(taken) > 0 {
		fakeErr(w, 409, "seat_unavailable", taken)
		return
	}
	for _, s := range body.Seats {
		f.holder[s] = fan
		f.set(s, "held")
	}
	fakeJSON(w, 201, map[string]any{"seats": body.Seats, "expires_at": time.Now().Add(5 * time.Minute)})
}

func (f *fakeServer) release(w http.ResponseWriter, r *http.Request) {
	fan := f.fan(w, r)
	seat := r.PathValue("seat")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holder[seat] != fan || f.state[seat] != "held" {
		fakeErr(w, 404, "not_found", nil)
		return
	}
	delete(f.holder, seat)
	f.set(seat, "available")
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeServer) checkout(w http.ResponseWriter, r *http.Request) {
	fan := f.fan(w, r)
	key := r.Header.Get("Idempotency-Key")
	var body struct {
		Card  string `json:"card"`
		Email string `json:"email"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || key == "" {
		fakeErr(w, 400, "bad_request", nil)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.orders[fan+"/"+key]; ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(201)
		w.Write([]byte(o.body))
		return
	}
	if body.Card != cardApprove {
		fakeErr(w, 402, "payment_declined", nil)
		return
	}
	var seats []string
	for _, s := range f.seats {
		if f.holder[s] == fan && f.state[s] == "held" {
			seats = append(seats, s)
		}
	}
	if len(seats) == 0 {
		fakeErr(w, 409, "hold_lost", nil)
		return
	}
	f.nextOrd++
	id := fmt.Sprintf("order-%d", f.nextOrd)
	for _, s := range seats {
		delete(f.holder, s)
		if f.sellTwice {
			f.set(s, "available") // the bug under test
		} else {
			f.set(s, "sold")
		}
	}
	b, _ := json.Marshal(map[string]any{"order_id": id, "status": "confirmed", "seats": seats, "total_cents": 100 * len(seats)})
	f.orders[fan+"/"+key] = fakeOrder{body: string(b), seats: seats}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	w.Write(b)
}
