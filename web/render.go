package web

import (
	"net/http"

	"github.com/a-h/templ"

	"seatmap/templates"
)

// render writes a templ component as an HTML page or fragment.
func (a *app) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := c.Render(r.Context(), w); err != nil {
		a.log.Warn("render", "path", r.URL.Path, "err", err)
	}
}

// renderError shows err to a browser as a readable page (htmx requests get
// the alert fragment only).
func (a *app) renderError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := errorJSON(err)
	if status >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "code", body.Error, "err", err)
	}
	if r.Header.Get("HX-Request") != "" {
		a.render(w, r, status, templates.Alert(body.Message))
		return
	}
	a.render(w, r, status, templates.ErrorPage(status, body.Message))
}
