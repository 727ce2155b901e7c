package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// acceptWS's reset makes the socket's close reset the connection, as the
// hub wants for a slow consumer it drops; without it the close is a FIN.
func TestAcceptWSResetResetsTheConnection(t *testing.T) {
	t.Parallel()
	for _, reset := range []bool{true, false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ws, doReset, err := (&app{}).acceptWS(w, r)
			if err != nil {
				t.Error(err)
				return
			}
			if reset {
				doReset()
			}
			ws.CloseNow()
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ws, _, err := websocket.Dial(ctx, strings.Replace(srv.URL, "http", "ws", 1), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = ws.Read(ctx)
		if got := errors.Is(err, syscall.ECONNRESET); got != reset {
			t.Errorf("reset %v: the client's read ended with %v", reset, err)
		}
		ws.CloseNow()
		cancel()
		srv.Close()
	}
}
