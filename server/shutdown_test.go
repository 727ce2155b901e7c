package server

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"seatmap/internal/testenv"
)

// TestShutdownClosesSocketsWithGoingAway opens a fan socket, sends SIGTERM
// (cancels Run's context) and expects the socket closed with 1001 and Run
// to return nil within 10 s.
func TestShutdownClosesSocketsWithGoingAway(t *testing.T) {
	id := testenv.EventID(t)
	seed := []string{"seatmap", "seed", "--event", id, "--name", "Shutdown", "--sections", "1", "--rows", "1", "--seats-per-row", "3"}
	if err := Run(context.Background(), seed, env(map[string]string{"DATABASE_URL": testenv.DatabaseURL(t)}), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	base, cancel, done := startServe(t, nil)
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	ws, _, err := websocket.Dial(ctx, strings.Replace(base, "http://", "ws://", 1)+"/api/events/"+id+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || !strings.Contains(string(msg), `"type"`) {
		t.Fatalf("first message = %q, %v", msg, err)
	}
	start := time.Now()
	cancel()
	for {
		_, _, err = ws.Read(ctx)
		if err != nil {
			break
		}
	}
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Fatalf("socket closed with %v (%v), want 1001 going away", got, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of SIGTERM")
	}
	t.Logf("socket closed and process stopped %v after SIGTERM", time.Since(start))
}
