package web

import (
	"net/http"

	"seatmap/booking"
	"seatmap/templates"
)

// handleHome renders the list of events.
func (a *app) handleHome(w http.ResponseWriter, r *http.Request) {
	a.sessions.fan(w, r)
	events, err := a.Booking.ListEvents(r.Context())
	if err != nil {
		a.renderError(w, r, err)
		return
	}
	cards := make([]templates.EventCard, 0, len(events))
	for _, e := range events {
		cards = append(cards, templates.EventCard{ID: e.ID, Name: e.Name, Venue: e.Venue, StartsAt: e.StartsAt,
			OnSaleAt: e.OnSaleAt, SeatsTotal: e.SeatsTotal, SeatsAvailable: e.SeatsAvailable})
	}
	a.render(w, r, http.StatusOK, templates.Home(cards))
}

// handleListEvents: GET /api/events.
func (a *app) handleListEvents(w http.ResponseWriter, r *http.Request) {
	a.sessions.fan(w, r) // API.md: any API call without a valid cookie gets one
	events, err := a.Booking.ListEvents(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if events == nil {
		events = []booking.Event{}
	}
	writeJSON(w, http.StatusOK, events)
}

// handleGetEvent: GET /api/events/{event}, with sections, rows and seats.
func (a *app) handleGetEvent(w http.ResponseWriter, r *http.Request) {
	a.sessions.fan(w, r)
	ev, err := a.Booking.EventDetail(r.Context(), r.PathValue("event"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ev)
}
