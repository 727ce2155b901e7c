package web

import (
	"net/http"
	"net/http/pprof"

	"seatmap/booking"
	"seatmap/static"
)

// routes lists every route of seatmap (API.md), grouped by audience.
func (a *app) routes(mux *http.ServeMux) {
	// Operations.
	mux.HandleFunc("GET /healthz", a.handleHealthz)
	mux.HandleFunc("GET /readyz", a.handleReadyz)
	if a.Metrics != nil {
		mux.Handle("GET /metrics", a.Metrics)
	}
	if a.Pprof {
		mux.Handle("GET /debug/pprof/", a.requireStaff(http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/profile", a.requireStaff(http.HandlerFunc(pprof.Profile)))
		mux.Handle("GET /debug/pprof/trace", a.requireStaff(http.HandlerFunc(pprof.Trace)))
	}

	// Static assets, embedded; versioned by the vendored release, cached a day.
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(86400, http.FileServerFS(static.FS))))

	// Pages.
	mux.HandleFunc("GET /{$}", a.handleHome)

	// Events and seats (JSON API).
	mux.HandleFunc("GET /api/events", a.handleListEvents)
	mux.HandleFunc("GET /api/events/{event}", a.handleGetEvent)

	// Waiting room.
	mux.HandleFunc("POST /api/events/{event}/queue", a.handleJoinQueue)
	mux.HandleFunc("GET /api/events/{event}/queue", a.handleQueueStatus)
	mux.HandleFunc("GET /api/events/{event}/shuffle", a.handleShuffle)

	// Holds and checkout (admission checked server-side on every call).
	mux.HandleFunc("POST /api/events/{event}/holds", a.handleHold)
	mux.HandleFunc("GET /api/events/{event}/holds", a.handleListHolds)
	mux.HandleFunc("DELETE /api/events/{event}/holds/{seat}", a.handleRelease)
	mux.HandleFunc("POST /api/events/{event}/checkout", a.handleCheckout)
	mux.HandleFunc("GET /api/orders/{order}", a.handleGetOrder)
	// Anything else under /api/ answers in the API's JSON error shape.
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		a.writeError(w, r, booking.Errorf(booking.ECodeNotFound, "no such API route: %s %s", r.Method, r.URL.Path))
	})

	// Staff API (bearer token or staff cookie).
	staff := func(h http.HandlerFunc) http.Handler { return a.requireStaff(h) }
	mux.Handle("GET /api/staff/events/{event}/stats", staff(a.handleStaffStats))
	mux.Handle("POST /api/staff/events/{event}/admission", staff(a.handleSetAdmission))
	mux.Handle("POST /api/staff/events", staff(a.handleCreateEvent))

	// Staff pages, the staff WebSockets and their controls (staff_routes.go).
	a.staffRoutes(mux)

	// The fan's event page, its htmx WebSocket and its form posts (fan_routes.go).
	a.fanRoutes(mux)
}

// cacheFor sets Cache-Control on every response of h.
func cacheFor(seconds int, h http.Handler) http.Handler {
	v := "public, max-age=" + itoa(seconds)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", v)
		h.ServeHTTP(w, r)
	})
}
