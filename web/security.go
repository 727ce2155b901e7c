package web

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"seatmap/booking"
)

// secure wraps the whole handler: security headers on every response, and
// cross-origin protection on state-changing requests (POST, PUT, PATCH,
// DELETE). Browsers' cross-origin requests are refused with 403 bad_origin
// unless their Origin matches ALLOWED_ORIGINS; requests without Origin or
// Sec-Fetch-Site (API clients, curl) pass, as API.md allows.
func (a *app) secure(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.writeError(w, r, booking.Errorf(booking.ECodeBadOrigin, "cross-origin request refused"))
	}))
	protected := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		if a.originAllowed(r) {
			next.ServeHTTP(w, r)
			return
		}
		protected.ServeHTTP(w, r)
	})
}

// originAllowed reports whether r carries an Origin whose host matches one of
// ALLOWED_ORIGINS (path.Match patterns such as "*.example.com").
func (a *app) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || len(a.AllowedOrigins) == 0 {
		return false
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	return matchHost(a.AllowedOrigins, u.Host)
}

// matchHost reports whether host matches any pattern (case-insensitive).
func matchHost(patterns []string, host string) bool {
	host = strings.ToLower(host)
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ToLower(p), host); ok {
			return true
		}
	}
	return false
}

// isStaff reports whether r carries the staff bearer token or a valid staff
// session cookie. The token is compared in constant time.
func (a *app) isStaff(r *http.Request) bool {
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return subtle.ConstantTimeCompare([]byte(strings.TrimPrefix(h, "Bearer ")), []byte(a.StaffToken)) == 1
	}
	if c, err := readCookie(r, staffCookie); err == nil {
		if v, ok := a.sessions.verify("staff", c.Value); ok {
			exp, err := strconv.ParseInt(strings.TrimPrefix(v, "staff:"), 10, 64)
			return strings.HasPrefix(v, "staff:") && err == nil && time.Now().Unix() < exp
		}
	}
	return false
}

// staffToken is the signed value of a staff session cookie valid until
// expires: a stolen cookie stops working then, even without a new secret.
func (a *app) staffToken(expires time.Time) string {
	return a.sessions.sign("staff", "staff:"+strconv.FormatInt(expires.Unix(), 10))
}

// requireStaff refuses requests without staff credentials: 401 JSON for the
// API, a redirect to the login page for browsers.
func (a *app) requireStaff(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.isStaff(r) {
			next.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/debug/") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="seatmap staff"`)
			a.writeError(w, r, booking.Errorf(booking.ECodeUnauthorized, "staff credentials required"))
			return
		}
		http.Redirect(w, r, "/staff/login?next="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
	})
}
