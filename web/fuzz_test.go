package web

// Fuzz tests of every decoder of outside input in this package: JSON bodies
// (holds, checkout, staff admission, staff event creation), the session
// cookie, the Idempotency-Key header and seat ids, and the Origin header.
// Seeds live in testdata/fuzz/<FuzzName>/; scripts/fuzz runs each target
// briefly in CI, and `go test` runs the seeds as ordinary tests.

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"seatmap/booking"
)

// decodeBody runs decodeJSON on body as a request would, and checks what
// holds for every input: an error is always a bad_request *booking.Error
// with a message (so the client gets 400, never a 500), and a body over
// maxBody is always refused.
func decodeBody(t *testing.T, body []byte, dst any) error {
	t.Helper()
	r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
	err := decodeJSON(httptest.NewRecorder(), r, dst)
	if err == nil {
		if len(body) > maxBody {
			t.Fatalf("accepted a %d-byte body (limit %d)", len(body), maxBody)
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		return nil
	}
	var be *booking.Error
	if !errors.As(err, &be) || be.Code != booking.ECodeBadRequest || booking.HTTPStatus(be.Code) != http.StatusBadRequest || be.Message == "" {
		t.Fatalf("decode error %#v (%v), want a bad_request *booking.Error with a message", err, err)
	}
	return err
}

// onlyKeys reports whether body is JSON null or an object whose keys are
// all in keys (exactly, as a strict client would write them): a shape
// decodeJSON must accept if the values have the right types.
func onlyKeys(body []byte, keys ...string) bool {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return false
	}
	for k := range m {
		found := false
		for _, want := range keys {
			found = found || k == want
		}
		if !found {
			return false
		}
	}
	return true
}

// TestDecodeJSONBodyLimit pins the 64 KiB limit exactly (the fuzzers keep
// their inputs small): a valid body of maxBody bytes decodes, one byte more
// is bad_request.
func TestDecodeJSONBodyLimit(t *testing.T) {
	body := func(n int) []byte {
		b := []byte(`{"seats":["A-1-1"]}`)
		return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
	}
	var req holdRequest
	if err := decodeBody(t, body(maxBody), &req); err != nil || len(req.Seats) != 1 {
		t.Fatalf("a %d-byte body: %v, seats %v", maxBody, err, req.Seats)
	}
	if err := decodeBody(t, body(maxBody+1), &holdRequest{}); err == nil {
		t.Fatalf("a %d-byte body was accepted", maxBody+1)
	}
}

func FuzzDecodeHold(f *testing.F) {
	f.Add([]byte(`{"seats":["A-1-1","A-1-2"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req holdRequest
		err := decodeBody(t, body, &req)
		var ref struct {
			Seats []string `json:"seats"`
		}
		shape := onlyKeys(body, "seats")
		refErr := json.Unmarshal(body, &ref)
		switch {
		case err == nil && refErr != nil:
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, refErr)
		case err == nil && len(req.Seats) != len(ref.Seats):
			t.Fatalf("decoded %q as %q, encoding/json says %q", body, req.Seats, ref.Seats)
		case err != nil && shape && refErr == nil && len(body) <= maxBody:
			t.Fatalf("refused well-formed %q: %v", body, err)
		}
		for i := 0; err == nil && i < len(req.Seats); i++ {
			if req.Seats[i] != ref.Seats[i] {
				t.Fatalf("seat %d decoded as %q, encoding/json says %q", i, req.Seats[i], ref.Seats[i])
			}
		}
	})
}

func FuzzDecodeCheckout(f *testing.F) {
	f.Add([]byte(`{"card":"4242424242424242","email":"fan@example.com"}`), "key-1")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		var b checkoutRequest
		err := decodeBody(t, body, &b)
		if shape := onlyKeys(body, "card", "email"); err != nil && shape && len(body) <= maxBody {
			var ref checkoutRequest
			if json.Unmarshal(body, &ref) == nil {
				t.Fatalf("refused well-formed %q: %v", body, err)
			}
		}
		if err != nil {
			return
		}
		req := booking.CheckoutRequest{EventID: "ev-1", FanID: newFanID(), IdempotencyKey: key, Card: b.Card, Email: b.Email}
		verr := req.Validate()
		if verr == nil {
			if !printableASCII(key, 64) || len(b.Card) < 12 || len(b.Card) > 19 || strings.Trim(b.Card, "0123456789") != "" ||
				!strings.Contains(b.Email, "@") {
				t.Fatalf("Validate accepted key %q card %q email %q", key, b.Card, b.Email)
			}
			return
		}
		var be *booking.Error
		if !errors.As(verr, &be) || be.Code != booking.ECodeBadRequest {
			t.Fatalf("Validate: %v, want bad_request", verr)
		}
	})
}

func FuzzDecodeAdmission(f *testing.F) {
	f.Add([]byte(`{"rate":50}`))
	f.Add([]byte(`{"paused":true}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req admissionRequest
		if decodeBody(t, body, &req) != nil {
			return
		}
		var ref struct {
			Rate   *int  `json:"rate"`
			Paused *bool `json:"paused"`
		}
		if err := json.Unmarshal(body, &ref); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
		}
		if (req.Rate == nil) != (ref.Rate == nil) || (req.Rate != nil && *req.Rate != *ref.Rate) ||
			(req.Paused == nil) != (ref.Paused == nil) || (req.Paused != nil && *req.Paused != *ref.Paused) {
			t.Fatalf("decoded %q differently from encoding/json", body)
		}
	})
}

func FuzzDecodeNewEvent(f *testing.F) {
	f.Add([]byte(`{"id":"ev-1","name":"Show","venue":"Hall","starts_at":"2030-01-01T20:00:00Z","on_sale_at":"2029-12-01T10:00:00Z",` +
		`"sections":[{"name":"Floor","price_cents":5000,"rows":3,"seats_per_row":4}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var ne booking.NewEvent
		if decodeBody(t, body, &ne) != nil {
			return
		}
		err := ne.Validate()
		if err != nil {
			var be *booking.Error
			if !errors.As(err, &be) || be.Code != booking.ECodeBadRequest {
				t.Fatalf("Validate: %v, want bad_request", err)
			}
			return
		}
		total := 0
		for _, s := range ne.Sections {
			total += s.Rows * s.SeatsPerRow
		}
		if total > 5000 {
			return // laying out big events is slow and adds nothing
		}
		// API.md: seat ids are unique within an event and match [A-Za-z0-9_-]{1,32}.
		seen := map[string]bool{}
		for _, sec := range ne.Layout() {
			for _, row := range sec.Rows {
				for _, seat := range row.Seats {
					if !booking.ValidSeatID(seat.ID) || seen[seat.ID] {
						t.Fatalf("layout gave seat id %q (malformed or repeated)", seat.ID)
					}
					seen[seat.ID] = true
				}
			}
		}
		if len(seen) != total {
			t.Fatalf("layout gave %d seats, sections describe %d", len(seen), total)
		}
	})
}

func FuzzSessionVerify(f *testing.F) {
	f.Add("AAAAAAAAAAAAAAAAAAAAAA", "", 0, 1)
	f.Add("staff", "staff.x", 5, 200)
	f.Fuzz(func(t *testing.T, value, token string, at, flip int) {
		s := sessions{secret: []byte("fuzz secret")}
		signed := s.sign("fan", value)

		// Whatever verify accepts, sign produced.
		if v, ok := s.verify("fan", token); ok && s.sign("fan", v) != token {
			t.Fatalf("verify accepted %q, which sign never produced", token)
		}

		v, ok := s.verify("fan", signed)
		switch {
		case value != "" && len(signed) <= 512 && (!ok || v != value):
			t.Fatalf("verify(sign(%q)) = %q, %v", value, v, ok)
		case value == "" && ok:
			t.Fatalf("verify accepted an empty value")
		}
		if _, ok := s.verify("staff", signed); ok {
			t.Fatalf("a fan token verified as a staff token: %q", signed)
		}
		if _, ok := (sessions{secret: []byte("another secret")}).verify("fan", signed); ok {
			t.Fatalf("a token verified under another secret: %q", signed)
		}

		// Changing, dropping or adding any byte is refused.
		i := int(uint(at) % uint(len(signed)))
		b := []byte(signed)
		b[i] ^= byte(uint(flip)%255 + 1)
		for name, tampered := range map[string]string{"changed": string(b), "truncated": signed[:len(signed)-1], "extended": signed + "A"} {
			if _, ok := s.verify("fan", tampered); ok {
				t.Fatalf("%s token %q (from %q) verified", name, tampered, signed)
			}
		}
	})
}

func FuzzFanCookie(f *testing.F) {
	s := sessions{secret: []byte("fuzz secret")}
	f.Add(s.sign("fan", "AAAAAAAAAAAAAAAAAAAAAA"))
	f.Add(s.sign("fan", "short"))
	f.Fuzz(func(t *testing.T, cookie string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", fanCookie+"="+cookie)
		w := httptest.NewRecorder()
		id := s.fan(w, r)
		if !validFanID(id) || !booking.ValidFanID(id) {
			t.Fatalf("fan id %q from cookie %q is not a valid id", id, cookie)
		}
		var issued *http.Cookie
		for _, c := range w.Result().Cookies() {
			if c.Name == fanCookie {
				issued = c
			}
		}
		if issued == nil {
			// The cookie was kept: it must be exactly what sign gives.
			c, err := r.Cookie(fanCookie)
			if err != nil || c.Value != s.sign("fan", id) {
				t.Fatalf("cookie %q kept as fan %q without a valid signature", cookie, id)
			}
			return
		}
		if v, ok := s.verify("fan", issued.Value); !ok || v != id || !issued.HttpOnly || issued.SameSite != http.SameSiteLaxMode {
			t.Fatalf("issued cookie %+v does not carry fan %q safely", issued, id)
		}
	})
}

// printableASCII reports whether s has 1 to max bytes, each 0x20..0x7e.
func printableASCII(s string, max int) bool {
	if len(s) < 1 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func FuzzIdempotencyKeyAndSeatIDs(f *testing.F) {
	f.Add("order-1", "A-1-1")
	f.Fuzz(func(t *testing.T, key, seat string) {
		// API.md: seat ids match [A-Za-z0-9_-]{1,32}.
		want := len(seat) >= 1 && len(seat) <= 32 && utf8.ValidString(seat) &&
			strings.Trim(seat, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == ""
		if got := booking.ValidSeatID(seat); got != want {
			t.Fatalf("ValidSeatID(%q) = %v, want %v", seat, got, want)
		}

		// API.md: Idempotency-Key is 1 to 64 characters (printable ASCII, as
		// any HTTP header value can carry).
		req := booking.CheckoutRequest{EventID: "ev-1", FanID: newFanID(), IdempotencyKey: key, Card: "4242424242424242", Email: "fan@example.com"}
		err := req.Validate()
		if (err == nil) != printableASCII(key, 64) {
			t.Fatalf("Validate with key %q: %v", key, err)
		}
		var be *booking.Error
		if err != nil && (!errors.As(err, &be) || be.Code != booking.ECodeBadRequest) {
			t.Fatalf("Validate with key %q: %v, want bad_request", key, err)
		}
	})
}

func FuzzOriginAllowed(f *testing.F) {
	f.Add("https://tickets.partner.example")
	f.Add("https://partner.example")
	f.Add("https://partner.example.evil.example")
	f.Add("https://tickets.partner.example@evil.example")
	a := &app{Deps: Deps{AllowedOrigins: []string{"*.partner.example", "partner.example"}}}
	f.Fuzz(func(t *testing.T, origin string) {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("Origin", origin)
		if !a.originAllowed(r) {
			return
		}
		// An allowed origin is partner.example or a subdomain of it, on the
		// default port: what the browser would send from those pages.
		u, err := url.Parse(origin)
		if err != nil {
			t.Fatalf("allowed unparsable origin %q", origin)
		}
		host := strings.ToLower(u.Host)
		if host != "partner.example" && (!strings.HasSuffix(host, ".partner.example") || strings.ContainsAny(host, "/@:")) {
			t.Fatalf("allowed origin %q (host %q)", origin, u.Host)
		}
		if (&app{}).originAllowed(r) {
			t.Fatalf("allowed %q with no patterns", origin)
		}
	})
}
