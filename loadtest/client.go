package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// requestTimeout bounds every HTTP request (the slow sandbox card takes 3 s).
const requestTimeout = 30 * time.Second

// fanRecvBuffer is a fan socket's SO_RCVBUF (Linux doubles it): a
// 10,000-seat snapshot is ~220 KB.
const fanRecvBuffer = 32 << 10

// client talks to the seatmap servers of a run (--url) about one event.
// One client (one http.Transport) serves every fan of a process; requests in
// flight are bounded across all servers. A fan's requests and socket go to
// its own server (fan.srv); requests without a fan (staff, the event) go to
// the first. It is safe for concurrent use.
type client struct {
	bases  []string // http://host:port, one per server
	wsURLs []string // ws://host:port/api/events/{event}/ws, one per server
	event  string
	staff  string
	hc     *http.Client
	wsc    *http.Client
	inFly  chan struct{}
	closer func()
}

func newClient(c *Config) *client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	// Sockets get a bounded receive buffer, set before connecting so the
	// window is negotiated for it: the kernel would otherwise grow each up
	// to net.ipv4.tcp_rmem's maximum (32 MiB here) while a busy load
	// generator reads slowly, and twenty thousand of them put the machine's
	// TCP under memory pressure — dropped packets, sockets stalled for a
	// minute of retransmission back-off — which real fans, each on their
	// own machine, would not do to the server.
	control := func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, fanRecvBuffer)
			if serr == nil && c.SourceAddrs > 0 && spreadSources {
				serr = bindNoPort(fd)
			}
		}); err != nil {
			return err
		}
		return serr
	}
	var nextSource atomic.Uint32
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConns:        c.HTTPConns * max(1, len(c.URLs)),
		MaxIdleConnsPerHost: c.HTTPConns,
		MaxConnsPerHost:     c.HTTPConns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	// WebSocket handshakes get their own transport: their connections are
	// taken over by the socket and never return to a pool.
	wsDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: control,
			LocalAddr: sourceAddr(addr, c.SourceAddrs, &nextSource)}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return strictEOFConn{conn}, nil
	}
	wsTr := &http.Transport{DialContext: wsDial, DisableKeepAlives: true, DisableCompression: true}
	cl := &client{
		event: c.Event,
		staff: c.StaffToken,
		hc:    &http.Client{Transport: tr, CheckRedirect: noRedirect},
		wsc:   &http.Client{Transport: wsTr, CheckRedirect: noRedirect},
		inFly: make(chan struct{}, c.HTTPConns),
		closer: func() {
			tr.CloseIdleConnections()
			wsTr.CloseIdleConnections()
		},
	}
	for _, base := range c.URLs {
		ws := strings.Replace(base, "http", "ws", 1) // http→ws, https→wss
		cl.bases = append(cl.bases, base)
		cl.wsURLs = append(cl.wsURLs, ws+"/api/events/"+url.PathEscape(c.Event)+"/ws")
	}
	return cl
}

// sourceAddr returns the local address of the next fan socket to addr: for
// a server on an IPv4 loopback address, one of n source addresses
// 127.0.1.1 … 127.0.1.n in turn; otherwise (or with n = 0) nil, the
// kernel's choice. Real fans come from many addresses. From one, every
// socket to the server's port needs its own local port, and once the
// even half of the ephemeral range (connect's first choice, ~14,000 ports
// here) is taken, each connect() walks all of it: 1.8 ms of kernel CPU per
// socket, against 35 µs spread over 32 addresses (PERFORMANCE.md, tenth
// round).
func sourceAddr(addr string, n int, next *atomic.Uint32) net.Addr {
	if n <= 0 || !spreadSources {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host).To4()
	if ip == nil || !ip.IsLoopback() {
		return nil
	}
	i := next.Add(1) % uint32(n)
	return &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i))}
}

// strictEOFConn is a fan socket's connection, whose end is an error to
// coder/websocket even in the middle of a message. The library (v1.8.15,
// msgReader.Read) takes io.EOF from the connection, between two fragments
// of a message or before a payload's first byte, for the message's end and
// hands over the part that arrived as if whole — as when the server drops a
// slow fan in the middle of a snapshot sent in parts — which a fan would
// count as a bad frame from the server. On a WebSocket the end of a
// message is the FIN bit, never the connection's end, so every io.EOF is
// unexpected here; the library's own close still reports its errors.
type strictEOFConn struct{ net.Conn }

func (c strictEOFConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// server returns the index of f's server (0 for requests without a fan).
func (c *client) server(f *fan) int {
	if f == nil || f.srv < 0 || f.srv >= len(c.bases) {
		return 0
	}
	return f.srv
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (c *client) close() { c.closer() }

// apiError is a failed request: the server's JSON error, or a made-up code
// for failures without one ("network", "timeout", "http_502", "bad_json").
type apiError struct {
	Status     int
	Code       string
	Message    string
	Seats      []string
	RetryAfter time.Duration
}

func (e *apiError) Error() string {
	if e.Status == 0 {
		return e.Code + ": " + e.Message
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// errCode returns the code of an error for the report's "errors" counts,
// or "" when err is nil or the run is over (ctx done: not the server's fault).
func errCode(ctx context.Context, err error) string {
	if err == nil || ctx.Err() != nil {
		return ""
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return "client"
}

// fan is one simulated fan's identity: its seatmap_sid cookie, and the
// server (index into --url) it talks to. Sessions are signed with the
// servers' shared SESSION_SECRET, so any server would accept the cookie; a
// fan keeps to one, as behind a load balancer with sticky connections.
type fan struct {
	cookie string // "seatmap_sid=..." or ""
	srv    int
}

const sidCookie = "seatmap_sid"

// keepCookie remembers the fan cookie a response sets.
func (f *fan) keepCookie(h http.Header) {
	for _, line := range h.Values("Set-Cookie") {
		name, rest, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(name) != sidCookie {
			continue
		}
		value, _, _ := strings.Cut(rest, ";")
		if value == "" {
			f.cookie = ""
		} else {
			f.cookie = sidCookie + "=" + value
		}
	}
}

// do sends one JSON request. body (if not nil) is encoded as JSON; a 2xx
// response is decoded into out (if not nil); anything else becomes an
// *apiError. hdr adds headers (pairs). The fan (may be nil) sends and keeps
// its cookie.
func (c *client) do(ctx context.Context, f *fan, method, path string, body, out any, hdr ...string) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.bases[c.server(f)]+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if f != nil && f.cookie != "" {
		req.Header.Set("Cookie", f.cookie)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	select {
	case c.inFly <- struct{}{}:
	case <-ctx.Done():
		return &apiError{Code: "timeout", Message: "no free connection: " + ctx.Err().Error()}
	}
	resp, err := c.hc.Do(req)
	<-c.inFly
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return &apiError{Code: "timeout", Message: err.Error()}
		}
		return &apiError{Code: "network", Message: err.Error()}
	}
	defer resp.Body.Close()
	if f != nil {
		f.keepCookie(resp.Header)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &apiError{Status: resp.StatusCode, Code: "network", Message: "reading the response: " + err.Error()}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out != nil && resp.StatusCode != http.StatusNoContent {
			if err := json.Unmarshal(data, out); err != nil {
				return &apiError{Status: resp.StatusCode, Code: "bad_json", Message: err.Error()}
			}
		}
		return nil
	}
	ae := &apiError{Status: resp.StatusCode}
	var eb struct {
		Error   string   `json:"error"`
		Message string   `json:"message"`
		Seats   []string `json:"seats"`
	}
	if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
		ae.Code, ae.Message, ae.Seats = eb.Error, eb.Message, eb.Seats
	} else {
		ae.Code = "http_" + strconv.Itoa(resp.StatusCode)
		ae.Message = strings.TrimSpace(string(data[:min(len(data), 200)]))
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			ae.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return ae
}

func (c *client) eventPath(rest string) string {
	return "/api/events/" + url.PathEscape(c.event) + rest
}

// queueStatus is the answer of POST/GET /api/events/{event}/queue.
type queueStatus struct {
	State    string    `json:"state"` // waiting | admitted | none
	Position int64     `json:"position"`
	Until    time.Time `json:"until"`
}

// join enters the waiting room (POST queue); the fan gets its cookie here.
func (c *client) join(ctx context.Context, f *fan) (queueStatus, error) {
	var q queueStatus
	err := c.do(ctx, f, http.MethodPost, c.eventPath("/queue"), nil, &q)
	return q, err
}

// queue reads the fan's place (GET queue).
func (c *client) queue(ctx context.Context, f *fan) (queueStatus, error) {
	var q queueStatus
	err := c.do(ctx, f, http.MethodGet, c.eventPath("/queue"), nil, &q)
	return q, err
}

// holdResp is a successful POST holds.
type holdResp struct {
	Seats     []string  `json:"seats"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (c *client) hold(ctx context.Context, f *fan, seats []string) (holdResp, error) {
	var h holdResp
	err := c.do(ctx, f, http.MethodPost, c.eventPath("/holds"), map[string][]string{"seats": seats}, &h)
	return h, err
}

func (c *client) release(ctx context.Context, f *fan, seat string) error {
	return c.do(ctx, f, http.MethodDelete, c.eventPath("/holds/"+url.PathEscape(seat)), nil, nil)
}

// order is a successful checkout.
type order struct {
	OrderID    string   `json:"order_id"`
	Status     string   `json:"status"`
	Seats      []string `json:"seats"`
	TotalCents int64    `json:"total_cents"`
}

// Sandbox cards (API.md "Checkout").
const (
	cardApprove = "4242424242424242"
	cardDecline = "4000000000000002"
)

func (c *client) checkout(ctx context.Context, f *fan, key, card, email string) (order, error) {
	var o order
	err := c.do(ctx, f, http.MethodPost, c.eventPath("/checkout"),
		map[string]string{"card": card, "email": email}, &o, "Idempotency-Key", key)
	return o, err
}

// eventDetail fetches the event with its seats.
func (c *client) eventDetail(ctx context.Context) (*eventDetail, error) {
	var ev eventDetail
	if err := c.do(ctx, nil, http.MethodGet, c.eventPath(""), nil, &ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// seatsUnsold returns how many of the event's seats are not sold: from the
// staff stats when the staff token is known (one event), else from GET
// /api/events.
func (c *client) seatsUnsold(ctx context.Context, total int) (int, error) {
	if c.staff != "" {
		var st struct {
			Sold int `json:"sold"`
		}
		err := c.do(ctx, nil, http.MethodGet, "/api/staff/events/"+url.PathEscape(c.event)+"/stats", nil, &st,
			"Authorization", "Bearer "+c.staff)
		if err == nil {
			return max(0, total-st.Sold), nil
		}
		if ae := asAPIError(err); ae == nil || ae.Status == 0 || ae.Status >= 500 {
			return 0, err // the server is struggling: do not ask twice
		}
	}
	return c.seatsAvailable(ctx) // no or a wrong token, or no stats endpoint
}

// saleCounts is what the staff stats say of the event's seats: sold from
// Postgres, held from the live holds in Redis (nil: not in the answer).
type saleCounts struct {
	Sold *int `json:"sold"`
	Held *int `json:"held"`
}

// staffCounts reads the staff stats of the event from the first server;
// without a staff token it returns zero counts and no error.
func (c *client) staffCounts(ctx context.Context) (saleCounts, error) {
	var sc saleCounts
	if c.staff == "" {
		return sc, nil
	}
	err := c.do(ctx, nil, http.MethodGet, "/api/staff/events/"+url.PathEscape(c.event)+"/stats", nil, &sc,
		"Authorization", "Bearer "+c.staff)
	return sc, err
}

// seatsAvailable returns the event's unsold seats (GET /api/events).
func (c *client) seatsAvailable(ctx context.Context) (int, error) {
	var list []struct {
		ID             string `json:"id"`
		SeatsAvailable int    `json:"seats_available"`
	}
	if err := c.do(ctx, nil, http.MethodGet, "/api/events", nil, &list); err != nil {
		return 0, err
	}
	for _, e := range list {
		if e.ID == c.event {
			return e.SeatsAvailable, nil
		}
	}
	return 0, &apiError{Status: 404, Code: "not_found", Message: "event " + c.event + " is not listed"}
}

// createEvent creates the event through the staff API, on sale now.
func (c *client) createEvent(ctx context.Context, cfg *Config) error {
	now := time.Now().UTC().Truncate(time.Second)
	type section struct {
		Name        string `json:"name"`
		PriceCents  int64  `json:"price_cents"`
		Rows        int    `json:"rows"`
		SeatsPerRow int    `json:"seats_per_row"`
	}
	body := struct {
		ID       string    `json:"id"`
		Name     string    `json:"name"`
		Venue    string    `json:"venue"`
		StartsAt time.Time `json:"starts_at"`
		OnSaleAt time.Time `json:"on_sale_at"`
		Sections []section `json:"sections"`
	}{ID: cfg.Event, Name: "Load test " + cfg.Event, Venue: "Loadtest Arena",
		StartsAt: now.Add(30 * 24 * time.Hour), OnSaleAt: now.Add(-time.Second)}
	for i := 0; i < cfg.Sections; i++ {
		p := max(cfg.PriceCents-int64(i)*(cfg.PriceCents/4), cfg.PriceCents/4)
		body.Sections = append(body.Sections, section{Name: "Section " + string(rune('A'+i)),
			PriceCents: p, Rows: cfg.Rows, SeatsPerRow: cfg.SeatsPerRow})
	}
	return c.do(ctx, nil, http.MethodPost, "/api/staff/events", body, nil, "Authorization", "Bearer "+c.staff)
}

// dial opens the fan's socket and returns it with its own address
// (host:port), which names it to ss(8) when a map stalls. The read limit
// fits a snapshot of a large venue.
func (c *client) dial(ctx context.Context, f *fan) (conn *websocket.Conn, local string, err error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	h := http.Header{}
	if f.cookie != "" {
		h.Set("Cookie", f.cookie)
	}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		local = i.Conn.LocalAddr().String()
	}})
	conn, resp, err := websocket.Dial(ctx, c.wsURLs[c.server(f)], &websocket.DialOptions{
		HTTPClient: c.wsc, HTTPHeader: h, CompressionMode: websocket.CompressionDisabled,
	})
	if resp != nil {
		f.keepCookie(resp.Header)
	}
	if err != nil {
		code := "ws_dial"
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			code = "ws_dial_" + strconv.Itoa(resp.StatusCode)
		}
		return nil, "", &apiError{Code: code, Message: err.Error()}
	}
	conn.SetReadLimit(64 << 20)
	return conn, local, nil
}
