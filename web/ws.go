package web

import (
	"cmp"
	"context"
	"errors"
	"net/http"

	"github.com/coder/websocket"

	"seatmap/realtime"
)

// acceptWS upgrades r to a WebSocket after the origin check: the server's
// own origin always passes, ALLOWED_ORIGINS patterns too, anything else gets
// 403 (coder/websocket verifies; verification is never skipped).
func (a *app) acceptWS(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	return websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:  a.AllowedOrigins,
		CompressionMode: websocket.CompressionDisabled,
	})
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
	defer release()
	if a.Sockets != nil {
		a.Sockets.Add(1)
		defer a.Sockets.Done()
	}
	ws, err := a.acceptWS(w, r)
	if err != nil {
		return // Accept has written the error response (403 for a bad origin).
	}
	ctx, cancel := a.serverContext()
	defer cancel()
	err = a.Hub.ServeFan(ctx, ws, realtime.FanParams{EventID: eventID, FanID: fan, Encoder: enc, Queue: a.Queue})
	var cr *realtime.CloseReason
	if errors.As(err, &cr) && cr.Code != websocket.StatusGoingAway {
		a.log.Info("socket closed by server", "event", eventID, "code", int(cr.Code), "reason", cr.Reason)
	}
}

// handleAPISocket: GET /api/events/{event}/ws — JSON messages (API.md).
func (a *app) handleAPISocket(w http.ResponseWriter, r *http.Request) {
	a.serveFanSocket(w, r, realtime.JSONEncoder{})
}

// handlePageSocket: GET /events/{event}/ws — htmx HTML fragments.
func (a *app) handlePageSocket(w http.ResponseWriter, r *http.Request) {
	a.serveFanSocket(w, r, htmlEncoder{})
}
