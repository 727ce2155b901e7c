package web

import (
	"net/http"

	"seatmap/booking"
)

// StaffStats is the staff view of one event (API.md "Staff").
type StaffStats struct {
	booking.SaleStats
	QueueLength       int     `json:"queue_length"`
	Admitted          int     `json:"admitted"`
	AdmitRate         int     `json:"admit_rate"`
	AdmitRateMeasured float64 `json:"admit_rate_measured"`
	Paused            bool    `json:"paused"`
}

// staffStats gathers an event's sale and queue figures.
func (a *app) staffStats(r *http.Request, eventID string) (StaffStats, error) {
	if _, err := a.Booking.Catalog(r.Context(), eventID); err != nil {
		return StaffStats{}, err
	}
	sale, err := a.Booking.Stats(r.Context(), eventID)
	if err != nil {
		return StaffStats{}, err
	}
	q, err := a.Queue.QueueStats(r.Context(), eventID)
	if err != nil {
		return StaffStats{}, err
	}
	if sale.SalesPerMinute == nil {
		sale.SalesPerMinute = []booking.MinuteSales{}
	}
	return StaffStats{SaleStats: sale, QueueLength: q.QueueLength, Admitted: q.Admitted,
		AdmitRate: q.Settings.Rate, AdmitRateMeasured: q.AdmitRate, Paused: q.Settings.Paused}, nil
}

// handleStaffStats: GET /api/staff/events/{event}/stats.
func (a *app) handleStaffStats(w http.ResponseWriter, r *http.Request) {
	st, err := a.staffStats(r, r.PathValue("event"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// admissionRequest is the body of POST /api/staff/events/{event}/admission.
type admissionRequest struct {
	Rate   *int  `json:"rate"`
	Paused *bool `json:"paused"`
}

// handleSetAdmission: POST /api/staff/events/{event}/admission — rate and
// pause, applied cluster-wide within 2 s.
func (a *app) handleSetAdmission(w http.ResponseWriter, r *http.Request) {
	var req admissionRequest
	if err := decodeJSON(w, r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	settings, err := a.applyAdmission(r, r.PathValue("event"), req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, settings)
}

// handleCreateEvent: POST /api/staff/events — same as `seatmap seed`.
func (a *app) handleCreateEvent(w http.ResponseWriter, r *http.Request) {
	var ne booking.NewEvent
	if err := decodeJSON(w, r, &ne); err != nil {
		a.writeError(w, r, err)
		return
	}
	ev, err := a.Booking.CreateEvent(r.Context(), ne)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.audit(r, ev.ID, "create_event", map[string]any{"name": ev.Name, "seats": ev.SeatsTotal})
	writeJSON(w, http.StatusCreated, ev)
}

// audit records a staff action in the log (and, where configured, the
// audit table).
func (a *app) audit(r *http.Request, eventID, action string, detail any) {
	a.log.Info("staff action", "event", eventID, "action", action, "detail", detail, "remote", r.RemoteAddr)
	if a.Audit != nil {
		if err := a.Audit(r.Context(), eventID, "staff", action, detail); err != nil {
			a.log.Error("audit write failed", "event", eventID, "action", action, "err", err)
		}
	}
}
