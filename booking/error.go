// Package booking is seatmap's domain: events and seats, holds, checkout,
// payments, orders, the outbox and the workers that keep Redis and Postgres in
// step. It knows nothing of HTTP or WebSockets; its Postgres code lives in
// files ending in _pg.go and its Redis code in files ending in _redis.go.
package booking

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes. They are part of the public contract (API.md "Errors"): the web
// layer maps each to an HTTP status and clients match on them.
const (
	ECodeBadRequest          = "bad_request"
	ECodeUnauthorized        = "unauthorized"
	ECodeNotAdmitted         = "not_admitted"
	ECodeBadOrigin           = "bad_origin"
	ECodeNotFound            = "not_found"
	ECodeSeatUnavailable     = "seat_unavailable"
	ECodeHoldLost            = "hold_lost"
	ECodeIdempotencyConflict = "idempotency_conflict"
	ECodePaymentDeclined     = "payment_declined"
	ECodeInvalidSeat         = "invalid_seat"
	ECodeSeatLimit           = "seat_limit"
	ECodeRateLimited         = "rate_limited"
	ECodeUnavailable         = "unavailable"
	ECodeEventExists         = "event_exists"
	ECodeInternal            = "internal"
)

// Error is the one error type of the domain: a machine-readable Code and a
// Message that is safe to show to a user. Seats names the seats an error is
// about (seat_unavailable lists the taken ones).
type Error struct {
	Code    string
	Message string
	Seats   []string
}

// Error implements the error interface.
func (e *Error) Error() string {
	if len(e.Seats) > 0 {
		return fmt.Sprintf("booking: %s: %s %v", e.Code, e.Message, e.Seats)
	}
	return fmt.Sprintf("booking: %s: %s", e.Code, e.Message)
}

// Errorf returns a domain error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, ECodeInternal
// for any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ECodeInternal
}

// ErrorMessage returns the user-safe message of err: the message of a domain
// error, "internal error" for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// HTTPStatus maps a domain error code to its HTTP status (API.md "Errors").
// The web layer answers with it, and a checkout stores it with its outcome
// for replays.
func HTTPStatus(code string) int {
	switch code {
	case ECodeBadRequest:
		return http.StatusBadRequest
	case ECodeUnauthorized:
		return http.StatusUnauthorized
	case ECodeNotAdmitted, ECodeBadOrigin:
		return http.StatusForbidden
	case ECodeNotFound:
		return http.StatusNotFound
	case ECodeSeatUnavailable, ECodeHoldLost, ECodeIdempotencyConflict, ECodeEventExists:
		return http.StatusConflict
	case ECodePaymentDeclined:
		return http.StatusPaymentRequired
	case ECodeInvalidSeat, ECodeSeatLimit:
		return http.StatusUnprocessableEntity
	case ECodeRateLimited:
		return http.StatusTooManyRequests
	case ECodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
