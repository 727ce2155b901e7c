package web

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/coder/websocket"

	"seatmap/realtime"
)

// acceptWS upgrades r to a WebSocket after the origin check: the server's
// own origin always passes, ALLOWED_ORIGINS patterns too, anything else gets
// 403 (coder/websocket verifies; verification is never skipped).
// The returned reset makes the socket's close reset its connection
// (realtime.FanParams.Reset).
func (a *app) acceptWS(w http.ResponseWriter, r *http.Request) (ws *websocket.Conn, reset func(), err error) {
	h := &smallReadBuffer{ResponseWriter: w}
	ws, err = websocket.Accept(h, r, &websocket.AcceptOptions{
		OriginPatterns:  a.AllowedOrigins,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, nil, err
	}
	tc := h.tc // not h: that would keep the ResponseWriter, and with it the request's state
	return ws, func() {
		if tc != nil {
			_ = tc.SetLinger(0) // best effort: a plain close still closes
		}
	}, nil
}

// wsReadBuffer is the read buffer of a hijacked WebSocket connection.
// Clients send only small frames (pings; ReadLimit is 4 KiB), and a larger
// frame is read through it all the same.
const wsReadBuffer = 512

// wsSendBuffer caps the kernel's send buffer of a fan socket (SO_SNDBUF;
// Linux doubles it), which would otherwise grow with the socket up to
// net.ipv4.tcp_wmem's maximum (4 MiB here). Room for a 10,000-seat
// snapshot and a few batches; beyond that a slow fan's backlog stays in the
// hub's bounded send queue, whose overflow closes the socket (the fan
// reconnects to a fresh snapshot), instead of in kernel memory: tens of
// thousands of slow sockets each holding megabytes put the whole machine's
// TCP under memory pressure, where the kernel drops packets and sockets
// stall for a minute of retransmission back-off (issue 7, drop3).
const wsSendBuffer = 64 << 10

// smallReadBuffer hands coder/websocket, which keeps the hijacked
// connection's read buffer for the socket's life, a wsReadBuffer-byte
// reader instead of net/http's 4 KiB one: with tens of thousands of fans
// connected, memory per socket is what bounds a process (issue 7: 40 KB
// per connection). net/http's own buffer is freed once the handler has
// returned (serveFanSocket).
// It keeps the hijacked TCP connection (tc) for acceptWS's reset.
type smallReadBuffer struct {
	http.ResponseWriter
	tc *net.TCPConn
}

// Hijack implements http.Hijacker.
func (s *smallReadBuffer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		s.tc = tc
		_ = tc.SetWriteBuffer(wsSendBuffer) // best effort: the socket works without
	}
	// coder/websocket keeps what the reader has buffered and reads the
	// rest from c, so bytes net/http had already read go into the new
	// buffer (which is as large as they need).
	n := brw.Reader.Buffered()
	early, _ := brw.Reader.Peek(n)
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), c), max(wsReadBuffer, n))
	if _, err := r.Peek(n); err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, bufio.NewReadWriter(r, brw.Writer), nil
}

// serverContext returns a context cancelled when the server shuts down, so
// sockets (whose request contexts outlive Shutdown) close with 1001. It is
// a child of Deps.Shutdown, which costs no goroutine per socket.
func (a *app) serverContext() (context.Context, context.CancelFunc) {
	return context.WithCancel(cmp.Or(a.Shutdown, context.Background()))
}

// serveFanSocket is both fan sockets: the JSON API one and the htmx page's,
// which differ only in their encoder. Connecting joins the waiting room.
func (a *app) serveFanSocket(w http.ResponseWriter, r *http.Request, enc realtime.Encoder) {
	fan := a.sessions.fan(w, r)
	eventID := r.PathValue("event")
	if !a.limit(w, r, "connect", fan) {
		return
	}
	if _, err := a.Booking.Catalog(r.Context(), eventID); err != nil {
		a.writeError(w, r, err)
		return
	}
	release, ok := a.conns.acquire(clientIP(r))
	if !ok {
		a.writeError(w, r, errTooManyConnections)
		return
	}
	if a.Sockets != nil {
		a.Sockets.Add(1)
	}
	done := func() {
		release()
		if a.Sockets != nil {
			a.Sockets.Done()
		}
	}
	ws, reset, err := a.acceptWS(w, r)
	if err != nil {
		done()
		return // Accept has written the error response (403 for a bad origin).
	}
	// The socket is served on a goroutine of its own and this handler
	// returns: net/http then lets go of the connection's request state —
	// its 4 KiB read buffer (the socket reads through a smaller one), the
	// request, this handler's deep stack — which it would keep for the
	// socket's whole life otherwise. Memory per socket is what bounds a
	// process (issue 7).
	go func() {
		defer done()
		ctx, cancel := a.serverContext()
		defer cancel()
		err := a.Hub.ServeFan(ctx, ws, realtime.FanParams{EventID: eventID, FanID: fan, Encoder: enc, Queue: a.Queue, Reset: reset})
		var cr *realtime.CloseReason
		if errors.As(err, &cr) && cr.Code != websocket.StatusGoingAway {
			a.log.Info("socket closed by server", "event", eventID, "code", int(cr.Code), "reason", cr.Reason)
		}
	}()
}

// handleAPISocket: GET /api/events/{event}/ws — JSON messages (API.md).
func (a *app) handleAPISocket(w http.ResponseWriter, r *http.Request) {
	a.serveFanSocket(w, r, realtime.JSONEncoder{})
}

// handlePageSocket: GET /events/{event}/ws — htmx HTML fragments.
func (a *app) handlePageSocket(w http.ResponseWriter, r *http.Request) {
	a.serveFanSocket(w, r, htmlEncoder{})
}
