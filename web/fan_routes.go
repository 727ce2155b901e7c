package web

import "net/http"

// fanRoutes lists the fan's pages, sockets and form posts.
func (a *app) fanRoutes(mux *http.ServeMux) {
	// Live sockets: JSON for API clients, HTML fragments for the htmx page.
	mux.HandleFunc("GET /api/events/{event}/ws", a.handleAPISocket)
	mux.HandleFunc("GET /events/{event}/ws", a.handlePageSocket)

	// The event page and what its htmx elements call.
	mux.HandleFunc("GET /events/{event}", a.handleEventPage)
	mux.HandleFunc("GET /events/{event}/hold-panel", a.handleHoldPanel)
	mux.HandleFunc("POST /events/{event}/seats/{seat}/hold", a.handleHoldSeat)
	mux.HandleFunc("POST /events/{event}/seats/{seat}/release", a.handleReleaseSeat)
	mux.HandleFunc("POST /events/{event}/holds/extend", a.handleExtendHolds)
	mux.HandleFunc("POST /events/{event}/checkout", a.handleCheckoutForm)

	// The list alternative to the map, and the map as one fragment for the
	// polling fallback when the WebSocket is blocked (same truth: the
	// catalog, Redis holds, Postgres sales).
	mux.HandleFunc("GET /events/{event}/seat-list", a.handleSeatList)
	mux.HandleFunc("GET /events/{event}/seatmap", a.handleSeatMapFragment)
	mux.HandleFunc("GET /orders/{order}", a.handleOrderPage)
}
