package web

import "net/http"

// staffRoutes lists the staff pages, sockets and controls. Everything but
// the login form needs staff credentials (bearer token or the staff cookie):
// the JSON API answers 401 without them, pages redirect to /staff/login.
func (a *app) staffRoutes(mux *http.ServeMux) {
	staff := func(h http.HandlerFunc) http.Handler { return a.requireStaff(h) }

	// Login and logout (the password is STAFF_TOKEN; failed attempts are
	// limited per client address).
	mux.HandleFunc("GET /staff/login", a.handleStaffLoginForm)
	mux.HandleFunc("POST /staff/login", a.handleStaffLogin(newStaffLoginGuard(staffLoginEvery, staffLoginBurst)))
	mux.HandleFunc("POST /staff/logout", a.handleStaffLogout)

	// Pages: the event list and each event's live cockpit.
	mux.Handle("GET /staff", staff(a.handleStaffHome))
	mux.Handle("GET /staff/events/{event}", staff(a.handleStaffCockpit))

	// The cockpit's htmx WebSocket (HTML fragments, about once a second).
	mux.Handle("GET /staff/events/{event}/ws", staff(a.handleStaffCockpitSocket))

	// Cockpit controls (htmx or plain form posts), audited like the API.
	mux.Handle("POST /staff/events/{event}/admission", staff(a.handleStaffAdmissionForm))
	mux.Handle("POST /staff/events/{event}/release", staff(a.handleStaffReleaseForm))

	// Staff JSON API additions: the stats socket and releasing a stuck hold.
	mux.Handle("GET /api/staff/events/{event}/ws", staff(a.handleStaffStatsSocket))
	mux.Handle("DELETE /api/staff/events/{event}/holds/{seat}", staff(a.handleStaffReleaseHold))
}
