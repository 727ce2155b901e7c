package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"seatmap/internal/testenv"
	"seatmap/realtime"
	"seatmap/web"
)

// withHub gives the world's handler a live-map hub on the test Redis.
func withHub(t *testing.T) func(*web.Deps) {
	return func(d *web.Deps) {
		h := realtime.NewHub(testenv.Redis(t), d.Booking, realtime.Options{})
		t.Cleanup(func() { h.Close() })
		d.Hub = h
	}
}

func TestFanSockets(t *testing.T) {
	t.Parallel()
	w := newWorld(t, withHub(t))
	for _, path := range []string{"/api/events/" + w.ev + "/ws", "/events/" + w.ev + "/ws"} {
		t.Run(path+" from a foreign origin is 403", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ws, res, err := websocket.Dial(ctx, w.wsURL(path), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
			if err == nil {
				ws.CloseNow()
				t.Fatal("cross-origin dial succeeded")
			}
			if res == nil || res.StatusCode != http.StatusForbidden {
				t.Fatalf("want 403, got %v (%v)", res, err)
			}
		})
	}
	t.Run("unknown event is 404", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, res, err := websocket.Dial(ctx, w.wsURL("/api/events/no-such-event/ws"), nil)
		if err == nil || res == nil || res.StatusCode != http.StatusNotFound {
			t.Fatalf("want 404, got %v (%v)", res, err)
		}
	})
	t.Run("same-origin JSON socket joins the queue, is admitted and gets a snapshot", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, w.wsURL("/api/events/"+w.ev+"/ws"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		seen := map[string]bool{}
		for !seen["snapshot"] {
			_, msg, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("read after %v: %v", seen, err)
			}
			var m struct {
				Type  string         `json:"type"`
				Seats map[string]any `json:"seats"`
			}
			if err := json.Unmarshal(msg, &m); err != nil {
				t.Fatalf("not JSON: %s", msg)
			}
			seen[m.Type] = true
			if m.Type == "snapshot" && len(m.Seats) == 0 {
				t.Fatalf("empty snapshot: %s", msg)
			}
		}
		if !seen["admitted"] {
			t.Fatalf("snapshot before admitted: %v", seen)
		}
	})
}
