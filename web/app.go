// Package web is seatmap's HTTP surface: the JSON API, the server-rendered
// pages, the WebSocket endpoints, sessions and origin checks. Every route is
// listed in routes.go; each handler loads, checks, changes and responds, with
// the domain work done by booking and realtime.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"seatmap/booking"
	"seatmap/realtime"
)

// Deps are what the HTTP layer needs; server.New builds them.
type Deps struct {
	Booking *booking.Service
	// Queue is the waiting room: joins, admissions, staff admission control.
	Queue *realtime.WaitingRoom
	// Hub serves the fans' live sockets (waiting room and seat map).
	Hub *realtime.Hub
	// Shutdown is cancelled when the server shuts down: sockets close with
	// 1001. Nil: never.
	Shutdown context.Context
	// Sockets counts open sockets so shutdown can wait for their close
	// frames (nil: not counted).
	Sockets *sync.WaitGroup
	// MaxConnsPerAddress caps open sockets per client address (0: no cap;
	// MAX_CONNS_PER_ADDRESS, default 2000 — NATs put many fans behind one
	// address, while one attacker must not take every file descriptor).
	MaxConnsPerAddress int
	// Audit records a staff action (nil: logged only).
	Audit func(ctx context.Context, eventID, actor, action string, detail any) error
	// Limits are the write paths' rate limits (zero value: DefaultLimits).
	Limits Limits
	// Ready reports whether Postgres and Redis answer (for /readyz).
	Ready func(ctx context.Context) error
	// Metrics serves /metrics (Prometheus text format).
	Metrics http.Handler
	Log     *slog.Logger
	// SessionSecret signs fan and staff cookies.
	SessionSecret []byte
	// StaffToken is the staff bearer token and login password.
	StaffToken string
	// AllowedOrigins are extra host patterns (path.Match syntax, as
	// coder/websocket's OriginPatterns) allowed for sockets and POSTs.
	AllowedOrigins []string
	// Pprof mounts /debug/pprof/ behind staff auth.
	Pprof bool
}

// app is the handlers' shared state.
type app struct {
	Deps
	log      *slog.Logger
	sessions sessions
	limiter  *limiter
	conns    *connCap
}

// NewHandler returns seatmap's whole HTTP handler.
func NewHandler(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Limits == (Limits{}) {
		d.Limits = DefaultLimits()
	}
	a := &app{Deps: d, log: d.Log, sessions: sessions{secret: d.SessionSecret}, limiter: newLimiter(),
		conns: &connCap{max: d.MaxConnsPerAddress, open: map[string]int{}}}
	mux := http.NewServeMux()
	a.routes(mux)
	return a.secure(mux)
}
