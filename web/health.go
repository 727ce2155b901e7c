package web

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// handleHealthz answers 200 while the process runs.
func (a *app) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// handleReadyz answers 200 only when Postgres and Redis answer, else 503.
func (a *app) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if a.Ready != nil {
		if err := a.Ready(ctx); err != nil {
			a.log.Warn("not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
	}
	w.Write([]byte("ready\n"))
}

func itoa(n int) string { return strconv.Itoa(n) }
