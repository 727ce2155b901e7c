package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"seatmap/booking"
)

// maxBody is the largest request body accepted (API.md: 64 KiB).
const maxBody = 64 << 10

// errorBody is the JSON shape of every error.
type errorBody struct {
	Error   string   `json:"error"`
	Message string   `json:"message"`
	Seats   []string `json:"seats,omitempty"`
}

// errorJSON builds the body for err. Internal errors become "internal error".
func errorJSON(err error) (int, errorBody) {
	code := booking.ErrorCode(err)
	body := errorBody{Error: code, Message: booking.ErrorMessage(err)}
	var de *booking.Error
	if errors.As(err, &de) {
		body.Seats = de.Seats
	}
	return booking.HTTPStatus(code), body
}

// writeJSON writes v as JSON with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v)
}

// writeError writes err as a JSON error, logging internal ones once.
func (a *app) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := errorJSON(err)
	if status >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "code", body.Error, "err", err)
	}
	if body.Error == booking.ECodeRateLimited && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, body)
}

// decodeJSON reads a JSON body of at most maxBody bytes into dst, refusing
// unknown fields and trailing data, and returns a bad_request error on any
// problem.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return booking.Errorf(booking.ECodeBadRequest, "request body is larger than %d bytes", maxBody)
		case errors.Is(err, io.EOF):
			return booking.Errorf(booking.ECodeBadRequest, "request body is empty; JSON expected")
		default:
			return booking.Errorf(booking.ECodeBadRequest, "malformed JSON: %s", jsonProblem(err))
		}
	}
	if dec.More() {
		return booking.Errorf(booking.ECodeBadRequest, "malformed JSON: more than one value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return booking.Errorf(booking.ECodeBadRequest, "malformed JSON: trailing data")
	}
	return nil
}

// jsonProblem describes a decoding error without echoing the input.
func jsonProblem(err error) string {
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &ute):
		return "field " + strconv.Quote(ute.Field) + " has the wrong type"
	case errors.As(err, &se):
		return "syntax error at offset " + strconv.FormatInt(se.Offset, 10)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	default:
		return "cannot decode"
	}
}
