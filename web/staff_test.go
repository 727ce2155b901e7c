package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"seatmap/booking"
	"seatmap/web"
)

// staffForm is the content type of the staff HTML forms.
const staffForm = "application/x-www-form-urlencoded"

// newStaffClient returns a browser-like client with its own cookie jar that
// does not follow redirects, so tests see the 303s themselves.
func (w *world) newStaffClient() *http.Client {
	w.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		w.t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// staffPost posts a form with client c; hdr are extra header pairs.
func (w *world) staffPost(c *http.Client, path string, form url.Values, hdr ...string) reply {
	w.t.Helper()
	return w.send(c, w.request("POST", path, form.Encode(), append([]string{"Content-Type", staffForm}, hdr...)...))
}

// mustStaffLogin logs a new client in through the form and returns it.
func (w *world) mustStaffLogin() *http.Client {
	w.t.Helper()
	c := w.newStaffClient()
	r := w.staffPost(c, "/staff/login", url.Values{"password": {w.staff}})
	if r.status != http.StatusSeeOther || r.cookie("seatmap_staff") == nil {
		w.t.Fatalf("staff login: want 303 with the staff cookie, got %s", r)
	}
	return c
}

// wsURL is the WebSocket URL of path on the world's server.
func (w *world) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(w.srv.URL, "http") + path
}

// mustReadJSON reads one text message of ws into a map of raw fields.
func mustReadJSON(t *testing.T, ctx context.Context, ws *websocket.Conn) map[string]json.RawMessage {
	t.Helper()
	typ, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read stats message: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v, want text", typ)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("stats message is not a JSON object: %v: %s", err, b)
	}
	return m
}

// auditActions returns the actions of the event's audit log, newest first.
func (w *world) auditActions() ([]string, []booking.AuditEntry) {
	w.t.Helper()
	entries, err := w.svc.AuditLog(context.Background(), w.ev, 50)
	if err != nil {
		w.t.Fatalf("audit log: %v", err)
	}
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Action
	}
	return out, entries
}

func TestStaffLoginWithWrongPasswordIs401WithAnAlert(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	r := w.staffPost(w.newStaffClient(), "/staff/login", url.Values{"password": {"not-the-token"}})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("want 401, got %s", r)
	}
	body := string(r.body)
	if !strings.Contains(body, `role="alert"`) || !strings.Contains(body, `name="password"`) {
		t.Errorf("want the form again with an alert; got %s", r)
	}
	if r.cookie("seatmap_staff") != nil {
		t.Error("a failed login set the staff cookie")
	}
}

func TestStaffLoginSetsTheCookieAndRedirectsOnlyToStaffPages(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	for _, tc := range []struct{ next, want string }{
		{"/staff/events/" + w.ev, "/staff/events/" + w.ev},
		{"//evil.example/staff", "/staff"},
		{"https://evil.example/staff", "/staff"},
		{"/staffing/../elsewhere", "/staff"},
	} {
		c := w.newStaffClient()
		r := w.staffPost(c, "/staff/login", url.Values{"password": {w.staff}, "next": {tc.next}})
		if r.status != http.StatusSeeOther || r.header.Get("Location") != tc.want {
			t.Errorf("next %q: want 303 to %q, got %s (Location %q)", tc.next, tc.want, r, r.header.Get("Location"))
		}
		ck := r.cookie("seatmap_staff")
		if ck == nil {
			t.Fatalf("next %q: no staff cookie", tc.next)
		}
		if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Secure {
			t.Errorf("staff cookie attributes: HttpOnly=%v SameSite=%v Path=%q Secure=%v (want HttpOnly, Lax, /, not Secure over http)",
				ck.HttpOnly, ck.SameSite, ck.Path, ck.Secure)
		}
	}

	t.Run("logged-in staff reach the pages and logout ends it", func(t *testing.T) {
		c := w.mustStaffLogin()
		if r := w.send(c, w.request("GET", "/staff", nil)); r.status != http.StatusOK {
			t.Fatalf("GET /staff after login: %s", r)
		}
		r := w.staffPost(c, "/staff/logout", nil)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/staff/login" {
			t.Fatalf("logout: want 303 to /staff/login, got %s", r)
		}
		if r := w.send(c, w.request("GET", "/staff", nil)); r.status != http.StatusSeeOther {
			t.Fatalf("GET /staff after logout: want a redirect to login, got %s", r)
		}
	})
}

func TestStaffLoginLimitsFailedAttemptsPerAddress(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	c := w.newStaffClient()
	// Successful logins do not count against the limit.
	for range 8 {
		w.mustStaffLogin()
	}
	for i := range 5 {
		if r := w.staffPost(c, "/staff/login", url.Values{"password": {"guess"}}); r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: want 401, got %s", i+1, r)
		}
	}
	r := w.staffPost(c, "/staff/login", url.Values{"password": {w.staff}})
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("sixth attempt within a minute: want 429 even with the right token, got %s", r)
	}
	if r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), `role="alert"`) {
		t.Errorf("429 wants Retry-After and an alert; got %s", r)
	}
	if r.cookie("seatmap_staff") != nil {
		t.Error("a rate-limited login set the staff cookie")
	}
}

func TestStaffPagesRedirectStrangersToLogin(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	forged := w.newStaffClient()
	u, _ := url.Parse(w.srv.URL)
	forged.Jar.SetCookies(u, []*http.Cookie{{Name: "seatmap_staff", Value: "staff.forged-signature", Path: "/"}})
	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"stranger", w.newStaffClient()}, {"forged cookie", forged}} {
		for _, path := range []string{"/staff", "/staff/events/x", "/staff/events/" + w.ev, "/staff/events/" + w.ev + "/ws"} {
			r := w.send(c.client, w.request("GET", path, nil))
			want := "/staff/login?next=" + url.QueryEscape(path)
			if r.status != http.StatusSeeOther || r.header.Get("Location") != want {
				t.Errorf("%s GET %s: want 303 to %s, got %s (Location %q)", c.name, path, want, r, r.header.Get("Location"))
			}
		}
		r := w.staffPost(c.client, "/staff/events/"+w.ev+"/admission", url.Values{"paused": {"true"}})
		if r.status != http.StatusSeeOther {
			t.Errorf("%s POST admission: want a redirect to login, got %s", c.name, r)
		}
	}
	if r := w.send(w.newStaffClient(), w.request("GET", "/staff/login?next=/staff/events/x", nil)); r.status != http.StatusOK ||
		!strings.Contains(string(r.body), `name="password"`) || !strings.Contains(string(r.body), `value="/staff/events/x"`) {
		t.Errorf("login form: want 200 with the password field and next, got %s", r)
	}
	if actions, _ := w.auditActions(); len(actions) != 0 {
		t.Errorf("strangers' posts were audited: %v", actions)
	}
}

func TestStaffHomeListsEventsWithSales(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	r := w.send(w.mustStaffLogin(), w.request("GET", "/staff", nil))
	r.wantStatus(t, http.StatusOK)
	body := string(r.body)
	for _, want := range []string{`href="/staff/events/` + w.ev + `"`, `data-event="` + w.ev + `"`, "Concert " + w.ev} {
		if !strings.Contains(body, want) {
			t.Errorf("staff home lacks %q", want)
		}
	}
}

func TestStaffCockpitShowsTheFigures(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	if _, err := w.svc.Hold(context.Background(), w.ev, "cockpit-fan", []string{"A-1-1", "B-2-5"}, nil); err != nil {
		t.Fatal(err)
	}
	c := w.mustStaffLogin()
	r := w.send(c, w.request("GET", "/staff/events/"+w.ev, nil))
	r.wantStatus(t, http.StatusOK)
	body := string(r.body)
	for _, want := range []string{
		`data-stat="sold">0<`, `data-stat="held">2<`, `data-stat="available">18<`,
		`data-stat="queue_length">0<`, `data-stat="admitted">0<`, `data-stat="revenue_cents">0<`,
		`ws-connect="/staff/events/` + w.ev + `/ws"`, `data-testid="sales-chart"`, `data-section="A"`,
		`data-testid="pause-admission"`, `data-testid="resume-admission"`, `name="rate"`, `name="seat"`, `id="audit-log"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("cockpit lacks %q", want)
		}
	}
	if r := w.send(c, w.request("GET", "/staff/events/no-such-event", nil)); r.status != http.StatusNotFound {
		t.Errorf("unknown event: want 404, got %s", r)
	}
}

func TestStaffStatsSocket(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	path := "/api/staff/events/" + w.ev + "/ws"

	t.Run("without credentials is 401", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, res, err := websocket.Dial(ctx, w.wsURL(path), nil)
		if err == nil {
			ws.CloseNow()
			t.Fatal("dial without credentials succeeded")
		}
		if res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("want 401, got %v (%v)", res, err)
		}
	})

	t.Run("from a foreign origin is refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ws, res, err := websocket.Dial(ctx, w.wsURL(path), &websocket.DialOptions{HTTPHeader: http.Header{
			"Authorization": {"Bearer " + w.staff}, "Origin": {"https://evil.example"}}})
		if err == nil {
			ws.CloseNow()
			t.Fatal("cross-origin dial succeeded")
		}
		if res == nil || res.StatusCode != http.StatusForbidden {
			t.Fatalf("want 403, got %v (%v)", res, err)
		}
	})

	t.Run("pushes stats with every field and keeps pushing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := w.svc.Hold(ctx, w.ev, "stats-fan", []string{"A-1-2"}, nil); err != nil {
			t.Fatal(err)
		}
		ws, _, err := websocket.Dial(ctx, w.wsURL(path), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + w.staff}}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer ws.CloseNow()
		m := mustReadJSON(t, ctx, ws)
		wantKeys(t, "stats message", m, "type", "sold", "held", "available", "queue_length", "admitted", "admit_rate",
			"admit_rate_measured", "paused", "revenue_cents", "orders", "sales_per_minute")
		var st struct {
			Type           string            `json:"type"`
			Held           int               `json:"held"`
			Available      int               `json:"available"`
			AdmitRate      int               `json:"admit_rate"`
			SalesPerMinute []json.RawMessage `json:"sales_per_minute"`
		}
		b, _ := json.Marshal(m)
		json.Unmarshal(b, &st)
		if st.Type != "stats" || st.Held != 1 || st.Available != seatsTotal-1 || st.AdmitRate != admitRate || len(st.SalesPerMinute) != 60 {
			t.Fatalf("first message: %+v", st)
		}

		// The next pushes follow the hold's release.
		if err := w.svc.Release(ctx, w.ev, "stats-fan", "A-1-2"); err != nil {
			t.Fatal(err)
		}
		for {
			m := mustReadJSON(t, ctx, ws)
			var held int
			json.Unmarshal(m["held"], &held)
			if held == 0 {
				break
			}
		}
		ws.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("unknown event is 404", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, res, err := websocket.Dial(ctx, w.wsURL("/api/staff/events/no-such-event/ws"),
			&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + w.staff}}})
		if err == nil || res == nil || res.StatusCode != http.StatusNotFound {
			t.Fatalf("want 404, got %v (%v)", res, err)
		}
	})
}

func TestStaffStatsSocketClosesWith1001OnShutdown(t *testing.T) {
	t.Parallel()
	shutdown, closeSockets := context.WithCancel(context.Background())
	defer closeSockets()
	w := newWorld(t, func(d *web.Deps) { d.Shutdown = shutdown })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, w.wsURL("/api/staff/events/"+w.ev+"/ws"),
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + w.staff}}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	mustReadJSON(t, ctx, ws)
	closeSockets()
	for {
		_, _, err := ws.Read(ctx)
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
			t.Fatalf("want close 1001, got %v (%v)", got, err)
		}
		return
	}
}

func TestStaffCockpitSocketPushesTheLiveFragment(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	c := w.mustStaffLogin()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, w.wsURL("/staff/events/"+w.ev+"/ws"), &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("dial with the staff cookie: %v", err)
	}
	defer ws.CloseNow()
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	for _, want := range []string{`id="cockpit-live"`, `id="audit-log"`, `id="cockpit-stale"`, `hx-swap-oob="true"`,
		`data-stat="sold">0<`, `data-stat="held">0<`, `data-stat="available">20<`, `data-testid="heatmap"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("push lacks %q", want)
		}
	}
	// A hold shows up in a later push.
	if _, err := w.svc.Hold(ctx, w.ev, "socket-fan", []string{"B-1-1"}, nil); err != nil {
		t.Fatal(err)
	}
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("no push showed the hold: %v", err)
		}
		if strings.Contains(string(b), `data-stat="held">1<`) {
			break
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")
}

func TestStaffControlsAreAppliedAndAudited(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	c := w.mustStaffLogin()
	ctx := context.Background()
	admission := "/staff/events/" + w.ev + "/admission"
	htmx := []string{"HX-Request", "true"}

	t.Run("pause, rate and resume change the settings", func(t *testing.T) {
		r := w.staffPost(c, admission, url.Values{"paused": {"true"}}, htmx...)
		r.wantStatus(t, http.StatusOK)
		for _, want := range []string{"Admission paused", `data-paused="true"`, `id="cockpit-live"`, `data-action="admission"`} {
			if !strings.Contains(string(r.body), want) {
				t.Errorf("pause answer lacks %q: %s", want, r)
			}
		}
		r = w.staffPost(c, admission, url.Values{"rate": {"250"}}, htmx...)
		r.wantStatus(t, http.StatusOK)
		s, err := w.queue.AdmissionSettings(ctx, w.ev)
		if err != nil || !s.Paused || s.Rate != 250 {
			t.Fatalf("after pause and rate 250: %+v, %v", s, err)
		}
		r = w.staffPost(c, admission, url.Values{"paused": {"false"}}, htmx...)
		r.wantStatus(t, http.StatusOK)
		if !strings.Contains(string(r.body), "Admission running at 250") {
			t.Errorf("resume answer: %s", r)
		}
		if s, _ := w.queue.AdmissionSettings(ctx, w.ev); s.Paused {
			t.Errorf("still paused after resume")
		}
	})

	t.Run("bad rate is 400 with an alert and changes nothing", func(t *testing.T) {
		for _, rate := range []string{"-1", "many", "2000000"} {
			r := w.staffPost(c, admission, url.Values{"rate": {rate}}, htmx...)
			if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `role="alert"`) {
				t.Errorf("rate %q: want 400 with an alert, got %s", rate, r)
			}
		}
		if s, _ := w.queue.AdmissionSettings(ctx, w.ev); s.Rate != 250 {
			t.Errorf("a refused rate changed it to %d", s.Rate)
		}
	})

	t.Run("release frees a hold whoever holds it", func(t *testing.T) {
		if _, err := w.svc.Hold(ctx, w.ev, "stuck-fan", []string{"A-2-3", "A-2-4"}, nil); err != nil {
			t.Fatal(err)
		}
		r := w.staffPost(c, "/staff/events/"+w.ev+"/release", url.Values{"seat": {"A-2-3"}}, htmx...)
		r.wantStatus(t, http.StatusOK)
		if !strings.Contains(string(r.body), "Released the hold on seat A-2-3") || !strings.Contains(string(r.body), `data-action="release_hold"`) {
			t.Errorf("release answer: %s", r)
		}
		hs, err := w.svc.Holds(ctx, w.ev, "stuck-fan")
		if err != nil || len(hs.Seats) != 1 || hs.Seats[0] != "A-2-4" {
			t.Fatalf("fan's holds after release: %+v, %v", hs, err)
		}
		r = w.staffPost(c, "/staff/events/"+w.ev+"/release", url.Values{"seat": {"A-2-3"}}, htmx...)
		if r.status != http.StatusNotFound || !strings.Contains(string(r.body), `role="alert"`) {
			t.Errorf("releasing a free seat: want 404 with an alert, got %s", r)
		}

		// The JSON API does the same.
		w.asStaff("DELETE", "/api/staff/events/"+w.ev+"/holds/A-2-4", nil).wantStatus(t, http.StatusNoContent)
		w.asStaff("DELETE", "/api/staff/events/"+w.ev+"/holds/A-2-4", nil).wantError(t, http.StatusNotFound, "not_found")
		w.asStaff("DELETE", "/api/staff/events/"+w.ev+"/holds/Z-9-9", nil).wantError(t, http.StatusNotFound, "not_found")
		w.anon("DELETE", "/api/staff/events/"+w.ev+"/holds/A-2-4", nil).wantError(t, http.StatusUnauthorized, "unauthorized")
		if hs, _ := w.svc.Holds(ctx, w.ev, "stuck-fan"); len(hs.Seats) != 0 {
			t.Errorf("holds left: %v", hs.Seats)
		}
	})

	t.Run("without htmx a control redirects back to the cockpit", func(t *testing.T) {
		r := w.staffPost(c, admission, url.Values{"paused": {"false"}})
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/staff/events/"+w.ev {
			t.Errorf("want 303 to the cockpit, got %s (Location %q)", r, r.header.Get("Location"))
		}
	})

	t.Run("a cross-origin post is refused", func(t *testing.T) {
		r := w.staffPost(c, admission, url.Values{"paused": {"true"}}, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
		if r.status != http.StatusForbidden {
			t.Errorf("want 403, got %s", r)
		}
	})

	// Every applied action is in the audit table, newest first, and on the page.
	actions, entries := w.auditActions()
	want := []string{"admission", "release_hold", "release_hold", "admission", "admission", "admission"}
	if strings.Join(actions, ",") != strings.Join(want, ",") {
		t.Fatalf("audit actions %v, want %v", actions, want)
	}
	var detail map[string]string
	if err := json.Unmarshal(entries[2].Detail, &detail); err != nil || detail["seat"] != "A-2-3" || detail["fan"] != "stuck-fan" || entries[2].Actor != "staff" {
		t.Errorf("release audit entry: %+v (%v)", entries[2], err)
	}
	page := w.send(c, w.request("GET", "/staff/events/"+w.ev, nil))
	if n := strings.Count(string(page.body), `data-action="admission"`); n != 4 {
		t.Errorf("cockpit lists %d admission entries, want 4", n)
	}
}
