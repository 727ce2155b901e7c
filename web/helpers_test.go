package web_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"seatmap/booking"
	"seatmap/internal/testenv"
	"seatmap/realtime"
	"seatmap/web"
)

// The event every world creates: section A "Floor" at priceA and section B
// "Balcony" at priceB, each rows × seatsPerRow, so seat ids run A-1-1 … B-2-5.
const (
	priceA      = 1000
	priceB      = 2500
	rows        = 2
	seatsPerRow = 5
	seatsTotal  = 2 * rows * seatsPerRow
	// maxSeats is MAX_SEATS_PER_FAN in every world.
	maxSeats = 4
	// admitRate is ADMIT_RATE in every world: high, so admission takes one
	// admitter tick.
	admitRate = 1000
	// cardApprove and cardDecline are API.md's sandbox cards.
	cardApprove = "4242424242424242"
	cardDecline = "4000000000000002"
)

// world is one test's seatmap: the HTTP handler built as server.New builds
// it, over this package's database and the test Redis, served by httptest,
// with one event of its own (ev) so parallel tests never share keys or rows.
type world struct {
	t     testing.TB
	srv   *httptest.Server
	db    *pgxpool.Pool
	rdb   *redis.Client
	svc   *booking.Service
	queue *realtime.WaitingRoom
	staff string // the staff bearer token
	ev    string
}

// newWorld starts a world. tweak, if non-nil, may change the handler's
// dependencies (limits, allowed origins) before the handler is built.
func newWorld(t testing.TB, tweak func(*web.Deps)) *world {
	t.Helper()
	w := &world{t: t, db: testenv.DB(t), rdb: testenv.Redis(t), ev: testenv.EventID(t), staff: "staff-" + randomHex(16)}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	w.svc = booking.NewService(w.db, w.rdb, booking.NewSandbox(w.db), booking.Config{
		HoldTTL:        5 * time.Minute,
		PaymentWindow:  2 * time.Minute,
		MaxSeatsPerFan: maxSeats,
	}, log, nil)
	w.queue = realtime.NewWaitingRoom(w.rdb, w.svc, realtime.WaitingRoomConfig{AdmitRate: admitRate, AdmitTTL: 10 * time.Minute}, log, nil)
	t.Cleanup(func() {
		// Leave no key of this test's event behind (every key carries {ev}).
		ctx := context.Background()
		iter := w.rdb.Scan(ctx, 0, "*{"+w.ev+"}*", 1000).Iterator()
		for iter.Next(ctx) {
			w.rdb.Del(ctx, iter.Val())
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		w.queue.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})

	d := web.Deps{
		Booking: w.svc,
		Queue:   w.queue,
		Audit:   w.svc.Audit,
		// Generous limits: only the rate-limit tests want refusals.
		Limits:        web.Limits{SessionRate: 1000, SessionBurst: 1000},
		Log:           log,
		SessionSecret: []byte("session-secret-" + randomHex(16)),
		StaffToken:    w.staff,
	}
	if tweak != nil {
		tweak(&d)
	}
	w.srv = httptest.NewServer(web.NewHandler(d))
	t.Cleanup(w.srv.Close)

	w.mustCreateEvent(w.ev)
	return w
}

// mustCreateEvent creates event id (the layout above), on sale since an hour.
func (w *world) mustCreateEvent(id string) booking.Event {
	w.t.Helper()
	ev, err := w.svc.CreateEvent(context.Background(), newEvent(id))
	if err != nil {
		w.t.Fatalf("create event %s: %v", id, err)
	}
	return ev
}

// newEvent describes event id with the layout of every world.
func newEvent(id string) booking.NewEvent {
	now := time.Now().UTC().Truncate(time.Second)
	return booking.NewEvent{
		ID: id, Name: "Concert " + id, Venue: "Hall",
		StartsAt: now.Add(24 * time.Hour), OnSaleAt: now.Add(-time.Hour),
		Sections: []booking.NewSection{
			{Name: "Floor", PriceCents: priceA, Rows: rows, SeatsPerRow: seatsPerRow},
			{Name: "Balcony", PriceCents: priceB, Rows: rows, SeatsPerRow: seatsPerRow},
		},
	}
}

// path returns an API path of this world's event: path("holds") is
// /api/events/{ev}/holds.
func (w *world) path(parts ...string) string {
	return "/api/events/" + w.ev + "/" + strings.Join(parts, "/")
}

// queryInt runs a one-integer SQL query.
func (w *world) queryInt(sql string, args ...any) int {
	w.t.Helper()
	var n int
	if err := w.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		w.t.Fatalf("query %q: %v", sql, err)
	}
	return n
}

// fan is one browser or API client: its own cookie jar, so its own session.
type fan struct {
	w    *world
	name string
	c    *http.Client
}

// newFan returns a client with an empty cookie jar.
func (w *world) newFan(name string) *fan {
	jar, err := cookiejar.New(nil)
	if err != nil {
		w.t.Fatal(err)
	}
	return &fan{w: w, name: name, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// reply is a response read in full.
type reply struct {
	method, path string
	status       int
	header       http.Header
	cookies      []*http.Cookie
	body         []byte
}

// request builds a request to the world's server. body is nil, a string or
// []byte (sent as is) or any other value (sent as JSON); hdr holds header
// name/value pairs.
func (w *world) request(method, path string, body any, hdr ...string) *http.Request {
	w.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			w.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, w.srv.URL+path, rd)
	if err != nil {
		w.t.Fatalf("new request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

// send sends req with client c and reads the whole response.
func (w *world) send(c *http.Client, req *http.Request) reply {
	w.t.Helper()
	res, err := c.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		w.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return reply{method: req.Method, path: req.URL.Path, status: res.StatusCode, header: res.Header, cookies: res.Cookies(), body: b}
}

// do sends a request as this fan.
func (f *fan) do(method, path string, body any, hdr ...string) reply {
	f.w.t.Helper()
	return f.w.send(f.c, f.w.request(method, path, body, hdr...))
}

// anon sends a request from a client without cookies.
func (w *world) anon(method, path string, body any, hdr ...string) reply {
	w.t.Helper()
	return w.send(http.DefaultClient, w.request(method, path, body, hdr...))
}

// asStaff sends a request with the staff bearer token and no cookies.
func (w *world) asStaff(method, path string, body any) reply {
	w.t.Helper()
	return w.anon(method, path, body, "Authorization", "Bearer "+w.staff)
}

// sid returns the fan's seatmap_sid cookie value ("" if it has none).
func (f *fan) sid() string {
	u, _ := url.Parse(f.w.srv.URL)
	for _, c := range f.c.Jar.Cookies(u) {
		if c.Name == "seatmap_sid" {
			return c.Value
		}
	}
	return ""
}

// mustJoin joins the event's waiting room and returns the answer.
func (f *fan) mustJoin() queueState {
	f.w.t.Helper()
	r := f.do("POST", f.w.path("queue"), nil)
	if r.status != http.StatusAccepted && r.status != http.StatusOK {
		f.w.t.Fatalf("%s: join: %s", f.name, r)
	}
	var st queueState
	r.decode(f.w.t, &st)
	return st
}

// mustAdmit joins the waiting room and polls GET queue until this fan is
// admitted (bounded: 10 s), returning when the admission ends.
func (f *fan) mustAdmit() time.Time {
	f.w.t.Helper()
	f.mustJoin()
	return f.awaitAdmission()
}

// awaitAdmission polls GET queue until the fan is admitted (at most 10 s).
func (f *fan) awaitAdmission() time.Time {
	f.w.t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for {
		r := f.do("GET", f.w.path("queue"), nil)
		var st queueState
		r.decode(f.w.t, &st)
		if st.State == "admitted" {
			if r.status != http.StatusOK || st.Until == nil {
				f.w.t.Fatalf("%s: admitted answer: %s", f.name, r)
			}
			return *st.Until
		}
		select {
		case <-tick.C:
		case <-deadline:
			f.w.t.Fatalf("%s: not admitted within 10s; last answer: %s", f.name, r)
		}
	}
}

// mustHold holds seats and fails the test unless the answer is 201.
func (f *fan) mustHold(seats ...string) holdSet {
	f.w.t.Helper()
	r := f.do("POST", f.w.path("holds"), map[string]any{"seats": seats})
	r.wantStatus(f.w.t, http.StatusCreated)
	var hs holdSet
	r.decode(f.w.t, &hs)
	return hs
}

// checkout posts a checkout with key and card.
func (f *fan) checkout(key, card string) reply {
	f.w.t.Helper()
	return f.do("POST", f.w.path("checkout"), map[string]string{"card": card, "email": f.name + "@example.com"},
		"Idempotency-Key", key)
}

// Response shapes of API.md, decoded strictly enough to notice a rename.

type queueState struct {
	State      string     `json:"state"`
	Position   *int       `json:"position"`
	Ahead      *int       `json:"ahead"`
	ETASeconds *int       `json:"eta_seconds"`
	Until      *time.Time `json:"until"`
	EntryID    string     `json:"entry_id"`
}

type holdSet struct {
	Seats     []string  `json:"seats"`
	ExpiresAt time.Time `json:"expires_at"`
}

type order struct {
	OrderID    string    `json:"order_id"`
	Event      string    `json:"event"`
	Status     string    `json:"status"`
	Seats      []string  `json:"seats"`
	TotalCents int64     `json:"total_cents"`
	CreatedAt  time.Time `json:"created_at"`
}

type errorBody struct {
	Error   string   `json:"error"`
	Message string   `json:"message"`
	Seats   []string `json:"seats"`
}

// String shows a reply in failure messages.
func (r reply) String() string {
	b := r.body
	if len(b) > 600 {
		b = append(b[:600:600], "…"...)
	}
	return r.method + " " + r.path + " → " + http.StatusText(r.status) + " (" + strconv.Itoa(r.status) + "): " + strings.TrimSpace(string(b))
}

func (r reply) wantStatus(t testing.TB, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("want status %d, got %s", status, r)
	}
}

// decode decodes the JSON body into v, failing the test if it is not JSON.
func (r reply) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %T: %v; %s", v, err, r)
	}
}

// fields returns the top-level keys of a JSON object body.
func (r reply) fields(t testing.TB) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	r.decode(t, &m)
	return m
}

// wantError checks an API.md error: the status, a JSON content type, the
// code and a non-empty message.
func (r reply) wantError(t testing.TB, status int, code string) errorBody {
	t.Helper()
	if r.status != status {
		t.Fatalf("want %d %s, got %s", status, code, r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error content type %q; %s", ct, r)
	}
	var e errorBody
	r.decode(t, &e)
	if e.Error != code || strings.TrimSpace(e.Message) == "" {
		t.Fatalf("want error %q with a message, got %s", code, r)
	}
	return e
}

// cookie returns the named cookie the reply set, or nil.
func (r reply) cookie(name string) *http.Cookie {
	for _, c := range r.cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// wantKeys fails unless the JSON object m has every key.
func wantKeys(t testing.TB, what string, m map[string]json.RawMessage, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: missing field %q in %v", what, k, keysOf(m))
		}
	}
}

func keysOf(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
