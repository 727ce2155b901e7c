package web

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"seatmap/templates"
)

// Staff socket tunables.
const (
	// staffPushInterval is how often staff sockets push fresh figures
	// (API.md: "about once per second"). Each push of one socket costs the
	// stats queries (a few SQL statements and one pipelined Redis round
	// trip); staff sockets are few, so they are not shared between tabs.
	staffPushInterval = time.Second
	// staffGatherTimeout bounds gathering one push's figures.
	staffGatherTimeout = 3 * time.Second
	// staffWriteTimeout bounds every write to a staff socket; a client that
	// cannot take one message in this time is disconnected.
	staffWriteTimeout = 5 * time.Second
	// staffReadLimit is the largest frame a staff client may send (it sends
	// none; control frames only).
	staffReadLimit = 4096
)

// staffStatsMessage is one message of GET /api/staff/events/{event}/ws:
// {"type":"stats", ...the fields of the stats endpoint...}.
type staffStatsMessage struct {
	Type string `json:"type"`
	StaffStats
}

// staffErrorMessage is sent on the stats socket when a push's figures could
// not be gathered (the socket stays open and retries).
type staffErrorMessage struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// handleStaffStatsSocket: GET /api/staff/events/{event}/ws — pushes
// {"type":"stats",...} at once and then about once a second.
func (a *app) handleStaffStatsSocket(w http.ResponseWriter, r *http.Request) {
	eventID := r.PathValue("event")
	if _, err := a.Booking.Catalog(r.Context(), eventID); err != nil {
		a.writeError(w, r, err)
		return
	}
	failures := staffPushLog{a: a, eventID: eventID}
	a.serveStaffSocket(w, r, func(r *http.Request) []byte {
		st, err := a.staffStats(r, eventID)
		failures.record(r.Context(), err)
		var msg any = staffStatsMessage{Type: "stats", StaffStats: st}
		if err != nil {
			_, body := errorJSON(err)
			msg = staffErrorMessage{Type: "error", Code: body.Error, Message: body.Message}
		}
		b, err := json.Marshal(msg)
		if err != nil {
			a.log.Error("encode staff stats", "event", eventID, "err", err)
			return nil
		}
		return b
	})
}

// handleStaffCockpitSocket: GET /staff/events/{event}/ws — the cockpit's
// htmx socket: pushes the live figures and audit log as HTML fragments
// (swapped out of band by id) at once and then about once a second. When
// the figures cannot be gathered it pushes a notice instead and keeps the
// last figures on the page.
func (a *app) handleStaffCockpitSocket(w http.ResponseWriter, r *http.Request) {
	eventID := r.PathValue("event")
	if _, err := a.Booking.Catalog(r.Context(), eventID); err != nil {
		a.renderError(w, r, err)
		return
	}
	failures := staffPushLog{a: a, eventID: eventID}
	a.serveStaffSocket(w, r, func(r *http.Request) []byte {
		var buf bytes.Buffer
		v, err := a.cockpitView(r, eventID)
		failures.record(r.Context(), err)
		if err != nil {
			_, body := errorJSON(err)
			err = templates.CockpitStale(body.Message, true).Render(r.Context(), &buf)
		} else {
			err = templates.CockpitPush(v).Render(r.Context(), &buf)
		}
		if err != nil {
			a.log.Error("render staff cockpit push", "event", eventID, "err", err)
			return nil
		}
		return buf.Bytes()
	})
}

// staffPushLog logs one socket's failures to gather figures without
// flooding the log while Postgres or Redis is down: the first failure of a
// run at warning level, repeats at debug level. Not safe for concurrent
// use: each socket's pushes run one after another.
type staffPushLog struct {
	a       *app
	eventID string
	failing bool
}

// record notes the outcome of one push (err nil: success).
func (l *staffPushLog) record(ctx context.Context, err error) {
	switch {
	case err == nil:
		l.failing = false
	case ctx.Err() != nil:
		// The socket is closing; nothing to report.
	case l.failing:
		l.a.log.Debug("staff push: still cannot gather figures", "event", l.eventID, "err", err)
	default:
		l.failing = true
		l.a.log.Warn("staff push: cannot gather figures", "event", l.eventID, "err", err)
	}
}

// serveStaffSocket upgrades r (origin checked, never skipped) and writes
// what next returns at once and then every staffPushInterval (nil: nothing
// this time) until the client goes away, a write misses its deadline, or the
// server shuts down — then it closes with 1001. The client is read only for
// control frames (CloseRead); a data frame closes the socket (1008), one
// over staffReadLimit too (1009). next gets r with a context that ends with
// the socket and a per-push timeout.
func (a *app) serveStaffSocket(w http.ResponseWriter, r *http.Request, next func(r *http.Request) []byte) {
	if a.Sockets != nil {
		a.Sockets.Add(1)
		defer a.Sockets.Done()
	}
	ws, _, err := a.acceptWS(w, r)
	if err != nil {
		return // Accept has answered (403 for a bad origin).
	}
	defer ws.CloseNow()
	ws.SetReadLimit(staffReadLimit)
	ctx := ws.CloseRead(r.Context())
	shutdown, stop := a.serverContext()
	defer stop()

	tick := time.NewTicker(staffPushInterval)
	defer tick.Stop()
	for {
		gctx, cancel := context.WithTimeout(ctx, staffGatherTimeout)
		msg := next(r.WithContext(gctx))
		cancel()
		if msg != nil {
			wctx, cancel := context.WithTimeout(ctx, staffWriteTimeout)
			err := ws.Write(wctx, websocket.MessageText, msg)
			cancel()
			if err != nil {
				return // the client left or is too slow; the socket is closed
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-shutdown.Done():
			ws.Close(websocket.StatusGoingAway, "server shutting down")
			return
		case <-tick.C:
		}
	}
}
