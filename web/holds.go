package web

import (
	"net/http"

	"seatmap/booking"
)

// holdRequest is the body of POST /api/events/{event}/holds.
type holdRequest struct {
	Seats []string `json:"seats"`
}

// handleHold: POST /api/events/{event}/holds — all or nothing.
func (a *app) handleHold(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	eventID := r.PathValue("event")
	if !a.limit(w, r, "hold", fan) {
		return
	}
	var req holdRequest
	if err := decodeJSON(w, r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if len(req.Seats) == 0 {
		a.writeError(w, r, booking.Errorf(booking.ECodeBadRequest, `"seats" must list at least one seat id`))
		return
	}
	if _, err := a.Booking.Catalog(r.Context(), eventID); err != nil {
		a.writeError(w, r, err)
		return
	}
	// The admission (DESIGN.md invariant 5) is checked by the hold's own
	// script.
	hs, err := a.Booking.Hold(r.Context(), eventID, fan, req.Seats, a.Queue)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, hs)
}

// handleListHolds: GET /api/events/{event}/holds — this fan's holds.
func (a *app) handleListHolds(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	hs, err := a.Booking.Holds(r.Context(), r.PathValue("event"), fan)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if len(hs.Seats) == 0 {
		// No holds: no expiry either (null rather than the zero time).
		writeJSON(w, http.StatusOK, map[string]any{"seats": []string{}, "expires_at": nil})
		return
	}
	writeJSON(w, http.StatusOK, hs)
}

// handleRelease: DELETE /api/events/{event}/holds/{seat} — only the holder.
func (a *app) handleRelease(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	if err := a.Booking.Release(r.Context(), r.PathValue("event"), fan, r.PathValue("seat")); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
