package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"seatmap/booking"
	"seatmap/realtime"
	"seatmap/templates"
)

// Staff login tunables.
const (
	// staffLoginBurst and staffLoginEvery: 5 failed logins per client
	// address at once, then one every 12 s (5 a minute) — plenty for people
	// who mistype, far too few to guess a token. Successful logins do not
	// count.
	staffLoginBurst = 5
	staffLoginEvery = 12 * time.Second
	// staffSessionTTL is how long the staff cookie lasts in the browser
	// (a working day).
	staffSessionTTL = 12 * time.Hour
	// staffFormMax bounds the body of staff form posts.
	staffFormMax = 4 << 10
	// cockpitOrders and cockpitAudit are how many orders and audit entries
	// the cockpit lists.
	cockpitOrders = 10
	cockpitAudit  = 20
)

// handleStaffLoginForm: GET /staff/login — the login form; staff already
// logged in go straight on.
func (a *app) handleStaffLoginForm(w http.ResponseWriter, r *http.Request) {
	next := staffNext(r.URL.Query().Get("next"))
	if a.isStaff(r) {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	a.render(w, r, http.StatusOK, templates.StaffLogin(templates.StaffLoginView{Next: next}))
}

// handleStaffLogin returns the POST /staff/login handler: it checks the
// password against STAFF_TOKEN in constant time, with failed attempts
// limited per client address by guard; on success it sets the signed staff
// cookie and redirects to next (a /staff path) or /staff. A wrong password
// shows the form again with 401, an address out of attempts gets 429.
func (a *app) handleStaffLogin(guard *staffLoginGuard) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, staffFormMax)
		if err := r.ParseForm(); err != nil {
			a.render(w, r, http.StatusBadRequest, templates.StaffLogin(templates.StaffLoginView{Next: "/staff", Error: "The form could not be read; please try again."}))
			return
		}
		view := templates.StaffLoginView{Next: staffNext(r.PostFormValue("next"))}
		done, wait := guard.begin(clientIP(r), time.Now())
		if done == nil {
			secs := int(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			view.Error = "Too many failed logins from your address. Try again in " + strconv.Itoa(secs) + " seconds."
			a.render(w, r, http.StatusTooManyRequests, templates.StaffLogin(view))
			return
		}
		ok := a.staffPasswordOK(r.PostFormValue("password"))
		done(ok)
		if !ok {
			a.log.Warn("staff login failed", "remote", clientIP(r))
			view.Error = "That is not the staff token."
			a.render(w, r, http.StatusUnauthorized, templates.StaffLogin(view))
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name:     cookieName(staffCookie, r),
			Value:    a.staffToken(time.Now().Add(staffSessionTTL)),
			Path:     "/",
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
			Secure:   isHTTPS(r),
			MaxAge:   int(staffSessionTTL.Seconds()),
		})
		a.log.Info("staff logged in", "remote", clientIP(r))
		http.Redirect(w, r, view.Next, http.StatusSeeOther)
	}
}

// staffLoginGuard limits failed staff logins per client address with a
// token bucket each (burst attempts, then one per every). Every attempt
// takes a token before the password is checked — so parallel guesses cannot
// slip past the limit — and a successful one gives it back, so staff who
// log in often are never locked out. Buckets idle for a few refill periods
// are forgotten, keeping memory bounded by recent addresses. Safe for
// concurrent use.
type staffLoginGuard struct {
	every time.Duration
	burst int

	mu      sync.Mutex
	buckets map[string]*staffLoginBucket
	swept   time.Time
}

type staffLoginBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// newStaffLoginGuard returns a guard allowing burst failed attempts per
// address and then one per every.
func newStaffLoginGuard(every time.Duration, burst int) *staffLoginGuard {
	return &staffLoginGuard{every: every, burst: burst, buckets: map[string]*staffLoginBucket{}}
}

// begin starts a login attempt from addr. It returns done, to be called
// with the attempt's outcome, or nil and how long addr must wait.
func (g *staffLoginGuard) begin(addr string, now time.Time) (done func(ok bool), wait time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	idle := g.every * time.Duration(g.burst+1) // by then a bucket is full again
	if now.Sub(g.swept) > idle {
		for k, b := range g.buckets {
			if now.Sub(b.seen) > idle {
				delete(g.buckets, k)
			}
		}
		g.swept = now
	}
	b := g.buckets[addr]
	if b == nil {
		b = &staffLoginBucket{lim: rate.NewLimiter(rate.Every(g.every), g.burst)}
		g.buckets[addr] = b
	}
	b.seen = now
	res := b.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 || !res.OK() {
		res.CancelAt(now)
		return nil, max(d, time.Second)
	}
	return func(ok bool) {
		if ok {
			// A success costs nothing. Cancelling at the reservation's own
			// time restores its token (later it would be spent for good).
			res.CancelAt(now)
		}
	}, 0
}

// staffPasswordOK compares a login password with STAFF_TOKEN in constant
// time (both hashed first, so not even the length leaks). An empty token
// never matches.
func (a *app) staffPasswordOK(password string) bool {
	if a.StaffToken == "" || password == "" {
		return false
	}
	got, want := sha256.Sum256([]byte(password)), sha256.Sum256([]byte(a.StaffToken))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// handleStaffLogout: POST /staff/logout — clears the staff cookie.
func (a *app) handleStaffLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName(staffCookie, r), Value: "", Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: isHTTPS(r), MaxAge: -1,
	})
	http.Redirect(w, r, "/staff/login", http.StatusSeeOther)
}

// staffNext returns next if it is a local staff page (/staff or below,
// other than the login and logout routes), else /staff: the login never
// redirects off the site.
func staffNext(next string) string {
	local := next == "/staff" || strings.HasPrefix(next, "/staff/") || strings.HasPrefix(next, "/staff?")
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" {
		return "/staff"
	}
	if !local || len(next) > 512 || strings.ContainsAny(next, "\\\r\n\t") ||
		strings.HasPrefix(next, "/staff/login") || strings.HasPrefix(next, "/staff/logout") {
		return "/staff"
	}
	return next
}

// handleStaffHome: GET /staff — every event with its sold and available
// seats (from Postgres; held seats count as available there).
func (a *app) handleStaffHome(w http.ResponseWriter, r *http.Request) {
	events, err := a.Booking.ListEvents(r.Context())
	if err != nil {
		a.renderError(w, r, err)
		return
	}
	rows := make([]templates.StaffEventRow, 0, len(events))
	for _, e := range events {
		rows = append(rows, templates.StaffEventRow{ID: e.ID, Name: e.Name, Venue: e.Venue, StartsAt: e.StartsAt,
			Total: e.SeatsTotal, Sold: e.SeatsTotal - e.SeatsAvailable, Available: e.SeatsAvailable})
	}
	a.render(w, r, http.StatusOK, templates.StaffHome(rows))
}

// handleStaffCockpit: GET /staff/events/{event} — the live cockpit.
func (a *app) handleStaffCockpit(w http.ResponseWriter, r *http.Request) {
	v, err := a.cockpitView(r, r.PathValue("event"))
	if err != nil {
		a.renderError(w, r, err)
		return
	}
	a.render(w, r, http.StatusOK, templates.StaffCockpit(v))
}

// cockpitView gathers everything the cockpit shows: the stats of the JSON
// API, the section fill, recent orders and the audit log. It uses only r's
// context (the sockets pass their handshake request with the socket's
// context). Unknown event → not_found; storage failures → unavailable.
func (a *app) cockpitView(r *http.Request, eventID string) (templates.Cockpit, error) {
	ctx := r.Context()
	ev, err := a.Booking.Event(ctx, eventID)
	if err != nil {
		return templates.Cockpit{}, err
	}
	st, err := a.staffStats(r, eventID)
	if err != nil {
		return templates.Cockpit{}, err
	}
	fills, err := a.Booking.SectionFills(ctx, eventID)
	if err != nil {
		return templates.Cockpit{}, err
	}
	orders, err := a.Booking.RecentOrders(ctx, eventID, cockpitOrders)
	if err != nil {
		return templates.Cockpit{}, err
	}
	audit, err := a.Booking.AuditLog(ctx, eventID, cockpitAudit)
	if err != nil {
		return templates.Cockpit{}, err
	}
	v := templates.Cockpit{
		EventID: ev.ID, Name: ev.Name, Venue: ev.Venue, StartsAt: ev.StartsAt, UpdatedAt: time.Now(),
		Stats: templates.CockpitStats{
			Sold: st.Sold, Held: st.Held, Available: st.Available, QueueLength: st.QueueLength, Admitted: st.Admitted,
			AdmitRate: st.AdmitRate, AdmitRateMeasured: st.AdmitRateMeasured, Paused: st.Paused,
			RevenueCents: st.RevenueCents, Orders: st.Orders,
		},
	}
	for _, m := range st.SalesPerMinute {
		v.Stats.SalesPerMinute = append(v.Stats.SalesPerMinute, templates.CockpitMinute{Minute: m.Minute, Seats: m.Seats})
	}
	for _, f := range fills {
		v.Sections = append(v.Sections, templates.CockpitSection{ID: f.ID, Name: f.Name, PriceCents: f.PriceCents,
			Total: f.Total, Sold: f.Sold, Held: f.Held})
	}
	for _, o := range orders {
		v.Orders = append(v.Orders, templates.CockpitOrder{ID: o.ID, Status: o.Status, Seats: o.Seats,
			TotalCents: o.TotalCents, CreatedAt: o.CreatedAt})
	}
	for _, e := range audit {
		v.Audit = append(v.Audit, templates.CockpitAudit{Actor: e.Actor, Action: e.Action,
			Detail: templates.StaffAuditDetail(e.Detail), CreatedAt: e.CreatedAt})
	}
	return v, nil
}

// handleStaffAdmissionForm: POST /staff/events/{event}/admission — the
// cockpit's pause, resume and rate controls (form fields "paused" = true or
// false, and/or "rate" = fans per second). Same rules and audit entry as
// POST /api/staff/events/{event}/admission.
func (a *app) handleStaffAdmissionForm(w http.ResponseWriter, r *http.Request) {
	eventID := r.PathValue("event")
	req, err := parseAdmissionForm(w, r)
	if err != nil {
		a.renderError(w, r, err)
		return
	}
	settings, err := a.applyAdmission(r, eventID, req)
	if err != nil {
		a.renderError(w, r, err)
		return
	}
	msg := "Admission running at " + strconv.Itoa(settings.Rate) + " fans per second."
	if settings.Paused {
		msg = "Admission paused (rate " + strconv.Itoa(settings.Rate) + " fans per second when resumed)."
	}
	a.controlDone(w, r, eventID, msg)
}

// parseAdmissionForm reads the admission control's form fields.
func parseAdmissionForm(w http.ResponseWriter, r *http.Request) (admissionRequest, error) {
	var req admissionRequest
	r.Body = http.MaxBytesReader(w, r.Body, staffFormMax)
	if err := r.ParseForm(); err != nil {
		return req, booking.Errorf(booking.ECodeBadRequest, "the form could not be read")
	}
	if v := strings.TrimSpace(r.PostFormValue("paused")); v != "" {
		p, err := strconv.ParseBool(v)
		if err != nil {
			return req, booking.Errorf(booking.ECodeBadRequest, `"paused" must be true or false`)
		}
		req.Paused = &p
	}
	if v := strings.TrimSpace(r.PostFormValue("rate")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return req, booking.Errorf(booking.ECodeBadRequest, "the rate must be a whole number of fans per second")
		}
		req.Rate = &n
	}
	return req, nil
}

// applyAdmission validates and applies an admission change for eventID and
// audits it — the logic behind both the JSON API and the cockpit. Errors:
// bad_request, not_found, unavailable.
func (a *app) applyAdmission(r *http.Request, eventID string, req admissionRequest) (realtime.AdmissionSettings, error) {
	if req.Rate == nil && req.Paused == nil {
		return realtime.AdmissionSettings{}, booking.Errorf(booking.ECodeBadRequest, `give a rate (fans per second) and/or paused (true or false)`)
	}
	if req.Rate != nil && (*req.Rate < 0 || *req.Rate > realtime.MaxAdmitRate) {
		return realtime.AdmissionSettings{}, booking.Errorf(booking.ECodeBadRequest, "the rate must be between 0 and %d fans per second", realtime.MaxAdmitRate)
	}
	if _, err := a.Booking.Catalog(r.Context(), eventID); err != nil {
		return realtime.AdmissionSettings{}, err
	}
	settings, err := a.Queue.SetAdmission(r.Context(), eventID, req.Rate, req.Paused)
	if err != nil {
		return realtime.AdmissionSettings{}, err
	}
	a.audit(r, eventID, "admission", req)
	return settings, nil
}

// handleStaffReleaseForm: POST /staff/events/{event}/release — the cockpit's
// "release a stuck hold" control (form field "seat").
func (a *app) handleStaffReleaseForm(w http.ResponseWriter, r *http.Request) {
	eventID := r.PathValue("event")
	r.Body = http.MaxBytesReader(w, r.Body, staffFormMax)
	if err := r.ParseForm(); err != nil {
		a.renderError(w, r, booking.Errorf(booking.ECodeBadRequest, "the form could not be read"))
		return
	}
	seat := strings.TrimSpace(r.PostFormValue("seat"))
	if err := a.forceRelease(r, eventID, seat); err != nil {
		a.renderError(w, r, err)
		return
	}
	a.controlDone(w, r, eventID, "Released the hold on seat "+seat+".")
}

// handleStaffReleaseHold: DELETE /api/staff/events/{event}/holds/{seat} —
// releases a seat's hold whoever holds it: 204, or 404 not_found when the
// seat is not held (or not a seat of the event).
func (a *app) handleStaffReleaseHold(w http.ResponseWriter, r *http.Request) {
	if err := a.forceRelease(r, r.PathValue("event"), r.PathValue("seat")); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// forceRelease deletes the hold on seat whoever holds it and audits it
// ("release_hold", with the seat and the fan who held it). Errors:
// bad_request (malformed seat id), not_found, unavailable.
func (a *app) forceRelease(r *http.Request, eventID, seat string) error {
	if !booking.ValidSeatID(seat) {
		return booking.Errorf(booking.ECodeBadRequest, "a seat id looks like A-1-1 (letters, digits, - and _, at most 32)")
	}
	fan, err := a.Booking.ForceRelease(r.Context(), eventID, seat)
	if err != nil {
		return err
	}
	a.audit(r, eventID, "release_hold", map[string]string{"seat": seat, "fan": fan})
	return nil
}

// controlDone answers a successful control post: for htmx the message plus
// fresh figures and audit log (out of band); without htmx a redirect back
// to the cockpit.
func (a *app) controlDone(w http.ResponseWriter, r *http.Request, eventID, message string) {
	if r.Header.Get("HX-Request") == "" {
		http.Redirect(w, r, "/staff/events/"+eventID, http.StatusSeeOther)
		return
	}
	v, err := a.cockpitView(r, eventID)
	if err != nil {
		// The action is done; only the refresh failed. The socket catches up.
		a.log.Warn("cockpit refresh after control", "event", eventID, "err", err)
		a.render(w, r, http.StatusOK, templates.CockpitControlNote(message))
		return
	}
	a.render(w, r, http.StatusOK, templates.CockpitControlResult(message, v))
}
