package booking_test

import (
	"testing"

	"seatmap/booking"
)

// TestHTTPStatus follows API.md's error table; it is also the status a
// checkout stores with its outcome for replays.
func TestHTTPStatus(t *testing.T) {
	for code, want := range map[string]int{
		booking.ECodeBadRequest: 400, booking.ECodeUnauthorized: 401, booking.ECodeNotAdmitted: 403,
		booking.ECodeBadOrigin: 403, booking.ECodeNotFound: 404, booking.ECodeSeatUnavailable: 409,
		booking.ECodeHoldLost: 409, booking.ECodeIdempotencyConflict: 409, booking.ECodeEventExists: 409,
		booking.ECodePaymentDeclined: 402, booking.ECodeInvalidSeat: 422, booking.ECodeSeatLimit: 422,
		booking.ECodeRateLimited: 429, booking.ECodeUnavailable: 503, booking.ECodeInternal: 500, "no_such_code": 500,
	} {
		if got := booking.HTTPStatus(code); got != want {
			t.Errorf("HTTPStatus(%q) = %d, want %d", code, got, want)
		}
	}
}
