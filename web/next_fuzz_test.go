package web

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzStaffNext: whatever the login's ?next= says, the redirect stays on
// this site's staff pages (no scheme, no host, no //, no backslash tricks).
func FuzzStaffNext(f *testing.F) {
	for _, s := range []string{"/staff", "/staff/events/demo", "//evil.example", "https://evil.example/staff", "/staff/../x",
		"/staff\\@evil", "/staff/login", "/staffx", "", "/staff?x=1", "/staff/\r\nSet-Cookie:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := staffNext(next)
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(got, "//") {
			t.Fatalf("staffNext(%q) = %q: leaves the site", next, got)
		}
		if got != "/staff" && !strings.HasPrefix(got, "/staff/") && !strings.HasPrefix(got, "/staff?") {
			t.Fatalf("staffNext(%q) = %q: not a staff page", next, got)
		}
		if strings.ContainsAny(got, "\\\r\n") {
			t.Fatalf("staffNext(%q) = %q: control characters", next, got)
		}
	})
}
