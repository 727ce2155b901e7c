package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestInFlightCountsRequestsButNotSockets: a request is counted while its
// handler runs; a WebSocket upgrade, one request for a socket's whole life,
// is not.
func TestInFlightCountsRequestsButNotSockets(t *testing.T) {
	var f inFlight
	var seen int
	h := f.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = f.count() }))
	for _, tt := range []struct {
		name    string
		upgrade string
		want    int
	}{
		{"plain request", "", 1},
		{"websocket upgrade", "websocket", 0},
		{"websocket upgrade, other case", "WebSocket", 0},
		{"another upgrade", "h2c", 1},
	} {
		r := httptest.NewRequest("GET", "/api/events/e/holds", nil)
		if tt.upgrade != "" {
			r.Header.Set("Upgrade", tt.upgrade)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if seen != tt.want {
			t.Errorf("%s: %d in flight while served, want %d", tt.name, seen, tt.want)
		}
		if n := f.count(); n != 0 {
			t.Errorf("%s: %d in flight after it was served", tt.name, n)
		}
	}
}
