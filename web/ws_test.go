package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
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

// TestFanSocketReadsThroughItsSmallBuffer: the hijacked socket reads through
// a small buffer of its own (wsReadBuffer), so a client frame that came in
// the same packet as the upgrade request, and one larger than the buffer,
// must both arrive whole. A raw client sends the upgrade request and two
// masked frames in one write — a ping, and a 3,000-byte message of an
// unknown type — and must get the pong and then the error message; then
// the same two frames again, after the upgrade, in the other order.
func TestFanSocketReadsThroughItsSmallBuffer(t *testing.T) {
	t.Parallel()
	w := newWorld(t, withHub(t))
	u, _ := url.Parse(w.srv.URL)
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	var out bytes.Buffer
	fmt.Fprintf(&out, "GET /api/events/%s/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", w.ev, u.Host)
	out.Write(maskedTextFrame([]byte(`{"type":"ping"}`)))
	big := []byte(`{"type":"shout","pad":"` + strings.Repeat("a", 3000) + `"}`)
	out.Write(maskedTextFrame(big))
	if _, err := c.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", res, err)
	}
	replies := func() []string {
		var got []string
		for len(got) < 2 {
			msg, err := readServerMessage(br)
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			var m struct {
				Type string `json:"type"`
				Code string `json:"code"`
			}
			if err := json.Unmarshal(msg, &m); err != nil {
				t.Fatalf("not JSON: %.200s", msg)
			}
			if m.Type == "pong" || m.Type == "error" {
				got = append(got, m.Type)
			}
		}
		return got
	}
	if got := replies(); got[0] != "pong" || got[1] != "error" {
		t.Fatalf("replies to the early frames %v, want pong then error", got)
	}
	// Later frames come through the small buffer itself.
	if _, err := c.Write(append(maskedTextFrame(big), maskedTextFrame([]byte(`{"type":"ping"}`))...)); err != nil {
		t.Fatal(err)
	}
	if got := replies(); got[0] != "error" || got[1] != "pong" {
		t.Fatalf("replies to later frames %v, want error then pong", got)
	}
}

// maskedTextFrame is one final client text frame (RFC 6455 §5.2), masked
// with a fixed key.
func maskedTextFrame(p []byte) []byte {
	key := [4]byte{1, 2, 3, 4}
	f := []byte{0x81}
	switch n := len(p); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xffff:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		panic("frame too large for this test")
	}
	f = append(f, key[:]...)
	for i, b := range p {
		f = append(f, b^key[i%4])
	}
	return f
}

// readServerMessage reads one server message: its unmasked frames'
// payloads up to the final one (the server writes some messages in
// fragments).
func readServerMessage(br *bufio.Reader) ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return nil, err
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if h[1]&0x80 != 0 || n > 1<<24 {
			return nil, fmt.Errorf("unexpected frame header %x, length %d", h, n)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return nil, err
		}
		msg = append(msg, p...)
		if h[0]&0x80 != 0 {
			return msg, nil
		}
	}
}
