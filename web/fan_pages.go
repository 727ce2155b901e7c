package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	"seatmap/booking"
	"seatmap/templates"
)

// newIdempotencyKey is the key a checkout form carries: one per rendering of
// the form, so a double submit is one checkout and a new attempt (after a
// declined card) is another.
func newIdempotencyKey() string {
	var b [16]byte
	rand.Read(b[:])
	return "form-" + hex.EncodeToString(b[:])
}

// holdsView loads the fan's hold panel.
func (a *app) holdsView(r *http.Request, eventID, fan string) (templates.HoldsView, error) {
	cat, err := a.Booking.Catalog(r.Context(), eventID)
	if err != nil {
		return templates.HoldsView{}, err
	}
	hs, err := a.Booking.Holds(r.Context(), eventID, fan)
	if err != nil {
		return templates.HoldsView{}, err
	}
	v := templates.HoldsView{EventID: eventID, ExpiresAt: hs.ExpiresAt, IdempotencyKey: newIdempotencyKey(),
		ExtendBy: a.holdExtension()}
	for _, id := range hs.Seats {
		si := seatInfo(eventID, cat, id, "mine")
		v.Seats = append(v.Seats, si)
		v.TotalCents += si.PriceCents
	}
	if len(v.Seats) > 0 {
		if v.ExtensionUsed, err = a.Booking.HoldsExtended(r.Context(), eventID, fan); err != nil {
			return templates.HoldsView{}, err
		}
	}
	return v, nil
}

// holdExtensionMax is what the one-time "I need more time" adds to a fan's
// holds: 2 minutes, the WCAG 2.2.1 spirit (a generous, simple adjustment)
// without letting one fan keep seats off the market for long. It is capped
// at HOLD_TTL, the most booking.ExtendHolds accepts.
const holdExtensionMax = 2 * time.Minute

// holdExtension is the extension this server offers.
func (a *app) holdExtension() time.Duration {
	return min(holdExtensionMax, a.Booking.Config().HoldTTL)
}

// limitHTML is limit for the page's htmx requests: a refusal is answered by
// fail (an HTML fragment, with Retry-After) instead of limit's JSON, which
// htmx would swap into the page as text.
func (a *app) limitHTML(w http.ResponseWriter, r *http.Request, action, fan string, fail func(error)) bool {
	probe := headerSink{h: http.Header{}}
	if a.limit(&probe, r, action, fan) {
		return true
	}
	w.Header().Set("Retry-After", probe.h.Get("Retry-After"))
	fail(booking.Errorf(booking.ECodeRateLimited, "too many requests; retry in a moment"))
	return false
}

// headerSink is a ResponseWriter that keeps headers and drops the rest.
type headerSink struct{ h http.Header }

func (s *headerSink) Header() http.Header         { return s.h }
func (s *headerSink) Write(b []byte) (int, error) { return len(b), nil }
func (s *headerSink) WriteHeader(int)             {}

// liveSections lays out eventID's map as fan sees it right now, from the
// sources of truth: holds from Redis (read first), then sales from Postgres,
// so a seat sold meanwhile shows sold. The list view and the polling
// fallback's snapshot use it; the socket's pushes come from the hub.
func (a *app) liveSections(ctx context.Context, eventID, fan string) ([]templates.SectionView, error) {
	cat, err := a.Booking.Catalog(ctx, eventID)
	if err != nil {
		return nil, err
	}
	held, err := a.Booking.HeldSeats(ctx, eventID)
	if err != nil {
		return nil, err
	}
	soldIDs, err := a.Booking.SoldSeats(ctx, eventID)
	if err != nil {
		return nil, err
	}
	sold := make(map[string]bool, len(soldIDs))
	for _, id := range soldIDs {
		sold[id] = true
	}
	return sectionViews(eventID, cat, func(id string) string {
		switch holder, ok := held[id]; {
		case sold[id]:
			return "sold"
		case ok && holder == fan:
			return "mine"
		case ok:
			return "held"
		}
		return "available"
	}), nil
}

// handleEventPage: GET /events/{event} — waiting room then seat map.
func (a *app) handleEventPage(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	ev, err := a.Booking.Event(r.Context(), r.PathValue("event"))
	if err != nil {
		a.renderError(w, r, err)
		return
	}
	holds, err := a.holdsView(r, ev.ID, fan)
	if err != nil {
		a.renderError(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, templates.EventPage(templates.EventView{
		ID: ev.ID, Name: ev.Name, Venue: ev.Venue, StartsAt: ev.StartsAt, OnSaleAt: ev.OnSaleAt,
		ShuffleSeedSHA256: ev.ShuffleSeedSHA256, OnSale: !time.Now().Before(ev.OnSaleAt), Holds: holds,
	}))
}

// handleHoldPanel: GET /events/{event}/hold-panel — the panel alone (htmx).
func (a *app) handleHoldPanel(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	v, err := a.holdsView(r, r.PathValue("event"), fan)
	if err != nil {
		a.renderError(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, templates.HoldPanel(v, false))
}

// seatAction answers a seat click: the (cleared or filled) alert in place,
// the seat and the hold panel out of band.
func (a *app) seatAction(w http.ResponseWriter, r *http.Request, hold bool) {
	fan := a.sessions.fan(w, r)
	eventID, seat := r.PathValue("event"), r.PathValue("seat")
	fail := func(err error) {
		status, body := errorJSON(err)
		if status >= 500 {
			a.log.Error("seat action failed", "event", eventID, "seat", seat, "err", err)
		}
		a.render(w, r, status, templates.Alert(friendly(body.Error, body.Message)))
	}
	// Whatever happened, the seat list (if open) reloads to show it.
	w.Header().Set("HX-Trigger", seatsChangedEvent)
	if !a.limitHTML(w, r, "hold", fan, fail) {
		return
	}
	cat, err := a.Booking.Catalog(r.Context(), eventID)
	if err != nil {
		fail(err)
		return
	}
	if _, ok := cat.Seats[seat]; !ok {
		fail(booking.Errorf(booking.ECodeInvalidSeat, "There is no such seat in this event."))
		return
	}
	if hold {
		_, err = a.Booking.Hold(r.Context(), eventID, fan, []string{seat}, a.Queue)
	} else {
		err = a.Booking.Release(r.Context(), eventID, fan, seat)
	}
	if err != nil {
		fail(err)
		return
	}
	v, err := a.holdsView(r, eventID, fan)
	if err != nil {
		fail(err)
		return
	}
	state := "available"
	if hold {
		state = "mine"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	ctx := r.Context()
	templates.Alert("").Render(ctx, w)
	templates.SeatButton(seatInfo(eventID, cat, seat, state), true).Render(ctx, w)
	templates.HoldPanel(v, true).Render(ctx, w)
}

// seatsChangedEvent is the event (HX-Trigger) after which the page's script
// reloads the seat list.
const seatsChangedEvent = "seats-changed"

// handleHoldSeat: POST /events/{event}/seats/{seat}/hold (htmx).
func (a *app) handleHoldSeat(w http.ResponseWriter, r *http.Request) { a.seatAction(w, r, true) }

// handleReleaseSeat: POST /events/{event}/seats/{seat}/release (htmx).
func (a *app) handleReleaseSeat(w http.ResponseWriter, r *http.Request) { a.seatAction(w, r, false) }

// friendly turns an error code into words for a fan.
func friendly(code, message string) string {
	switch code {
	case booking.ECodeSeatUnavailable:
		return "Sorry, that seat was just taken by someone else. Please pick another."
	case booking.ECodeSeatLimit:
		return "You have reached the limit of seats per fan for this event."
	case booking.ECodeNotAdmitted:
		return "It's not your turn yet — please wait in the waiting room (or your turn has ended: reload to rejoin)."
	case booking.ECodePaymentDeclined:
		return "Your card was declined. Your seats are still held; try another card."
	case booking.ECodeHoldLost:
		return "Your hold on these seats ended before payment finished; you were not charged. Please pick seats again."
	case booking.ECodeRateLimited:
		return "You're going a bit fast — wait a moment and try again."
	case booking.ECodeUnavailable:
		return "We're having trouble right now; nothing was charged. Please try again in a moment."
	case booking.ECodeInternal:
		return "Something went wrong on our side. Please try again."
	}
	return message
}

// handleCheckoutForm: POST /events/{event}/checkout (htmx form) — buys the
// held seats; the panel becomes the confirmation, or shows why not.
func (a *app) handleCheckoutForm(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	eventID := r.PathValue("event")
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	showPanel := func(status int, err error) {
		_, body := errorJSON(err)
		if status >= 500 {
			a.log.Error("checkout failed", "event", eventID, "err", err)
		}
		v, verr := a.holdsView(r, eventID, fan)
		if verr != nil {
			a.render(w, r, status, templates.Alert(friendly(body.Error, body.Message)))
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		templates.HoldPanel(v, false).Render(r.Context(), w)
		templates.OOBAlert(friendly(body.Error, body.Message)).Render(r.Context(), w)
	}
	if !a.limitHTML(w, r, "checkout", fan, func(err error) { showPanel(http.StatusTooManyRequests, err) }) {
		return
	}
	if err := r.ParseForm(); err != nil {
		showPanel(http.StatusBadRequest, booking.Errorf(booking.ECodeBadRequest, "The form could not be read."))
		return
	}
	req := booking.CheckoutRequest{EventID: eventID, FanID: fan, IdempotencyKey: r.PostForm.Get("idempotency_key"),
		Card: compactCard(r.PostForm.Get("card")), Email: r.PostForm.Get("email")}
	if err := req.Validate(); err != nil {
		showPanel(http.StatusBadRequest, err)
		return
	}
	if _, err := a.Queue.Admitted(r.Context(), eventID, fan); err != nil {
		showPanel(http.StatusForbidden, err)
		return
	}
	order, err := a.Booking.Checkout(r.Context(), req)
	if err != nil {
		status, _ := errorJSON(err)
		showPanel(status, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	templates.OrderConfirmation(order.ID, order.Seats, order.TotalCents).Render(r.Context(), w)
	templates.OOBAlert("").Render(r.Context(), w)
}

// compactCard drops the spaces and dashes people type in card numbers.
func compactCard(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != ' ' && c != '-' {
			out = append(out, c)
		}
	}
	return string(out)
}

// handleOrderPage: GET /orders/{order} — the buyer's (or staff's) order.
func (a *app) handleOrderPage(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	order, owner, err := a.Booking.Order(r.Context(), r.PathValue("order"))
	if err == nil && owner != fan && !a.isStaff(r) {
		err = booking.Errorf(booking.ECodeNotFound, "No such order.")
	}
	if err != nil {
		a.renderError(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, templates.OrderPage(order.ID, order.EventID, order.Status, order.Seats, order.TotalCents, order.CreatedAt))
}

// handleSeatList: GET /events/{event}/seat-list — the list alternative to
// the map (htmx, on opening the list and after every change), built from
// the same truth as the map. Admitted fans only, like the map.
func (a *app) handleSeatList(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	eventID := r.PathValue("event")
	fail := func(err error) {
		status, body := errorJSON(err)
		if status >= 500 {
			a.log.Error("seat list failed", "event", eventID, "err", err)
		}
		a.render(w, r, status, templates.SeatListError(eventID, friendly(body.Error, body.Message)))
	}
	secs, ok := a.admittedSections(w, r, eventID, fan, fail)
	if !ok {
		return
	}
	a.render(w, r, http.StatusOK, templates.SeatList(templates.BuildSeatList(eventID, secs)))
}

// handleSeatMapFragment: GET /events/{event}/seatmap — the whole map as fan
// sees it now: the page's script polls it every few seconds when the
// WebSocket cannot be used. Admitted fans only.
func (a *app) handleSeatMapFragment(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	eventID := r.PathValue("event")
	fail := func(err error) { a.renderError(w, r, err) }
	secs, ok := a.admittedSections(w, r, eventID, fan, fail)
	if !ok {
		return
	}
	a.render(w, r, http.StatusOK, templates.SeatMap(secs))
}

// admittedSections loads the live seat states an admitted fan may see (the
// list view and the polling fallback), after the rate limit and admission
// checks; on refusal it calls fail and returns false.
func (a *app) admittedSections(w http.ResponseWriter, r *http.Request, eventID, fan string, fail func(error)) ([]templates.SectionView, bool) {
	if !a.limitHTML(w, r, "snapshot", fan, fail) {
		return nil, false
	}
	if _, err := a.Queue.Admitted(r.Context(), eventID, fan); err != nil {
		fail(err)
		return nil, false
	}
	secs, err := a.liveSections(r.Context(), eventID, fan)
	if err != nil {
		fail(err)
		return nil, false
	}
	return secs, true
}

// handleExtendHolds: POST /events/{event}/holds/extend (htmx) — the fan's
// one-time "I need more time": every hold of the fan gets holdExtension
// more, once per event; the use is audited. Answers with the cleared alert,
// and out of band the panel (whose timer follows the new expiry) and the
// confirmation in the announcement region.
func (a *app) handleExtendHolds(w http.ResponseWriter, r *http.Request) {
	fan := a.sessions.fan(w, r)
	eventID := r.PathValue("event")
	fail := func(err error) {
		status, body := errorJSON(err)
		if status >= 500 {
			a.log.Error("hold extension failed", "event", eventID, "err", err)
		}
		a.render(w, r, status, templates.Alert(friendly(body.Error, body.Message)))
	}
	if !a.limitHTML(w, r, "hold", fan, fail) {
		return
	}
	if _, err := a.Queue.Admitted(r.Context(), eventID, fan); err != nil {
		fail(err)
		return
	}
	by := a.holdExtension()
	hs, err := a.Booking.ExtendHolds(r.Context(), eventID, fan, by)
	if err != nil {
		fail(err)
		return
	}
	if a.Audit != nil {
		detail := map[string]any{"seats": hs.Seats, "by_seconds": int(by.Seconds()), "expires_at": hs.ExpiresAt}
		if err := a.Audit(r.Context(), eventID, "fan:"+fan[:min(6, len(fan))], "hold_extended", detail); err != nil {
			a.log.Warn("audit hold extension", "event", eventID, "err", err)
		}
	}
	v, err := a.holdsView(r, eventID, fan)
	if err != nil {
		fail(err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	ctx := r.Context()
	templates.Alert("").Render(ctx, w)
	templates.HoldPanel(v, true).Render(ctx, w)
	templates.HoldExtended(by, hs.ExpiresAt).Render(ctx, w)
}
