package web

import (
	"net/http"

	"seatmap/booking"
)

// checkoutRequest is the body of POST /api/events/{event}/checkout. Prices
// never come from the client.
type checkoutRequest struct {
	Card  string `json:"card"`
	Email string `json:"email"`
}

// handleCheckout: POST /api/events/{event}/checkout with Idempotency-Key —
// buys every seat this fan holds in the event.
func (a *app) handleCheckout(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	eventID := r.PathValue("event")
	if !a.limit(w, r, "checkout", fan) {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		a.writeError(w, r, booking.Errorf(booking.ECodeBadRequest, "the Idempotency-Key header is required (1 to 64 characters)"))
		return
	}
	var body checkoutRequest
	if err := decodeJSON(w, r, &body); err != nil {
		a.writeError(w, r, err)
		return
	}
	req := booking.CheckoutRequest{EventID: eventID, FanID: fan, IdempotencyKey: key, Card: body.Card, Email: body.Email,
		Admission: a.Queue}
	if err := req.Validate(); err != nil {
		a.writeError(w, r, err)
		return
	}
	if _, err := a.Booking.Catalog(r.Context(), eventID); err != nil {
		a.writeError(w, r, err)
		return
	}
	order, err := a.Booking.Checkout(r.Context(), req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, order)
}

// handleGetOrder: GET /api/orders/{order} — for the fan who bought it or
// staff; anyone else gets 404 so order ids reveal nothing.
func (a *app) handleGetOrder(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	order, owner, err := a.Booking.Order(r.Context(), r.PathValue("order"))
	if err == nil && owner != fan && !a.isStaff(r) {
		err = booking.Errorf(booking.ECodeNotFound, "no such order")
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, order)
}
