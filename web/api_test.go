package web_test

// These tests drive seatmap's JSON API over real HTTP, against real Postgres
// and Redis, and check exactly what /work/shared/API.md promises: routes,
// shapes, the errors table, identity and origin rules. Each top-level test
// has its own world (server, waiting room, event) and runs in parallel; its
// subtests share that world and run in order.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"seatmap/internal/testenv"
	"seatmap/web"
)

var seatIDShape = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func TestEvents(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	f := w.newFan("fan")

	t.Run("list includes the event with every field", func(t *testing.T) {
		r := f.do("GET", "/api/events", nil)
		r.wantStatus(t, http.StatusOK)
		var list []map[string]json.RawMessage
		r.decode(t, &list)
		var mine map[string]json.RawMessage
		for _, e := range list {
			var id string
			json.Unmarshal(e["id"], &id)
			if id == w.ev {
				mine = e
			}
		}
		if mine == nil {
			t.Fatalf("event %s not listed: %s", w.ev, r)
		}
		wantKeys(t, "event", mine, "id", "name", "venue", "starts_at", "on_sale_at", "seats_total", "seats_available")
		var ev struct {
			Name           string    `json:"name"`
			Venue          string    `json:"venue"`
			StartsAt       time.Time `json:"starts_at"`
			OnSaleAt       time.Time `json:"on_sale_at"`
			SeatsTotal     int       `json:"seats_total"`
			SeatsAvailable int       `json:"seats_available"`
		}
		b, _ := json.Marshal(mine)
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("event fields have the wrong types: %v; %s", err, b)
		}
		want := newEvent(w.ev) // times as of now: the world made its event a moment ago
		near := func(a, b time.Time) bool { return a.Sub(b).Abs() <= 5*time.Second }
		if ev.Name != want.Name || ev.Venue != want.Venue || !near(ev.StartsAt, want.StartsAt) || !near(ev.OnSaleAt, want.OnSaleAt) ||
			ev.SeatsTotal != seatsTotal || ev.SeatsAvailable != seatsTotal {
			t.Errorf("event = %+v, want %s/%s %v %v with %d seats, all available", ev, want.Name, want.Venue, want.StartsAt, want.OnSaleAt, seatsTotal)
		}
	})

	t.Run("detail lists sections rows and seats with prices", func(t *testing.T) {
		r := f.do("GET", "/api/events/"+w.ev, nil)
		r.wantStatus(t, http.StatusOK)
		wantKeys(t, "event detail", r.fields(t), "id", "name", "venue", "starts_at", "on_sale_at", "seats_total", "seats_available", "sections")
		var detail struct {
			ID       string `json:"id"`
			Sections []struct {
				ID         string `json:"id"`
				Name       string `json:"name"`
				PriceCents int64  `json:"price_cents"`
				Rows       []struct {
					ID    string `json:"id"`
					Seats []map[string]json.RawMessage
				} `json:"rows"`
			} `json:"sections"`
		}
		r.decode(t, &detail)
		if detail.ID != w.ev || len(detail.Sections) != 2 {
			t.Fatalf("want event %s with 2 sections; %s", w.ev, r)
		}
		prices := map[string]int64{"Floor": priceA, "Balcony": priceB}
		seen := map[string]bool{}
		for _, s := range detail.Sections {
			if s.ID == "" || prices[s.Name] != s.PriceCents || len(s.Rows) != rows {
				t.Errorf("section %s %q: price %d, %d rows; want price %d, %d rows", s.ID, s.Name, s.PriceCents, len(s.Rows), prices[s.Name], rows)
			}
			for _, row := range s.Rows {
				if row.ID == "" {
					t.Errorf("section %s: a row without id", s.ID)
				}
				for _, seat := range row.Seats {
					wantKeys(t, "seat", seat, "id", "label", "x", "y")
					var id, label string
					var x, y int
					json.Unmarshal(seat["id"], &id)
					json.Unmarshal(seat["label"], &label)
					if json.Unmarshal(seat["x"], &x) != nil || json.Unmarshal(seat["y"], &y) != nil || label == "" {
						t.Errorf("seat %s: bad label or position: %v", id, seat)
					}
					if !seatIDShape.MatchString(id) || seen[id] {
						t.Errorf("seat id %q is malformed or not unique", id)
					}
					seen[id] = true
				}
			}
		}
		if len(seen) != seatsTotal || !seen["A-1-1"] || !seen["B-2-5"] {
			t.Errorf("got %d seats, want %d from A-1-1 to B-2-5", len(seen), seatsTotal)
		}
	})

	t.Run("unknown event is 404 not_found", func(t *testing.T) {
		for _, id := range []string{testenv.EventID(t), "no.such.event", strings.Repeat("x", 65)} {
			f.do("GET", "/api/events/"+id, nil).wantError(t, http.StatusNotFound, "not_found")
			f.do("POST", "/api/events/"+id+"/queue", nil).wantError(t, http.StatusNotFound, "not_found")
			f.do("GET", "/api/events/"+id+"/holds", nil).wantError(t, http.StatusNotFound, "not_found")
			f.do("POST", "/api/events/"+id+"/holds", `{"seats":["A-1-1"]}`).wantError(t, http.StatusNotFound, "not_found")
		}
	})
}

func TestQueue(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	first, second := w.newFan("first"), w.newFan("second")

	t.Run("status before joining is none", func(t *testing.T) {
		r := first.do("GET", w.path("queue"), nil)
		r.wantStatus(t, http.StatusOK)
		if m := r.fields(t); len(m) != 1 || string(m["state"]) != `"none"` {
			t.Fatalf(`want exactly {"state":"none"}, got %s`, r)
		}
	})

	// Pause admission so the fans stay in line long enough to look at it.
	w.asStaff("POST", "/api/staff/events/"+w.ev+"/admission", `{"paused":true}`).wantStatus(t, http.StatusOK)

	var entry string
	t.Run("joining is 202 waiting with a first-come place", func(t *testing.T) {
		for i, f := range []*fan{first, second} {
			r := f.do("POST", w.path("queue"), nil)
			r.wantStatus(t, http.StatusAccepted)
			wantKeys(t, "waiting", r.fields(t), "state", "position", "ahead", "eta_seconds")
			var st queueState
			r.decode(t, &st)
			if st.State != "waiting" || *st.Position != i+1 || *st.Ahead != i || st.EntryID == "" {
				t.Fatalf("%s: want waiting at position %d, %d ahead; got %s", f.name, i+1, i, r)
			}
			if i == 0 {
				entry = st.EntryID
			} else if st.EntryID == entry {
				t.Fatalf("two fans share entry id %s", entry)
			}
		}
	})

	t.Run("joining again keeps the place", func(t *testing.T) {
		r := first.do("POST", w.path("queue"), nil)
		r.wantStatus(t, http.StatusAccepted)
		var st queueState
		r.decode(t, &st)
		if st.EntryID != entry || *st.Position != 1 {
			t.Fatalf("rejoin: want entry %s at position 1, got %s", entry, r)
		}
		r = first.do("GET", w.path("queue"), nil)
		r.decode(t, &st)
		if st.State != "waiting" || st.EntryID != entry || *st.Position != 1 {
			t.Fatalf("status: want waiting entry %s at 1, got %s", entry, r)
		}
	})

	t.Run("waiting fans cannot hold or check out", func(t *testing.T) {
		first.do("POST", w.path("holds"), `{"seats":["A-1-1"]}`).wantError(t, http.StatusForbidden, "not_admitted")
		first.checkout("k1", cardApprove).wantError(t, http.StatusForbidden, "not_admitted")
	})

	w.asStaff("POST", "/api/staff/events/"+w.ev+"/admission", `{"paused":false}`).wantStatus(t, http.StatusOK)

	t.Run("resumed admission admits with an until", func(t *testing.T) {
		until := first.awaitAdmission()
		if left := time.Until(until); left < 9*time.Minute || left > 10*time.Minute+5*time.Second {
			t.Fatalf("admission ends in %v, want about ADMIT_TTL (10m)", left)
		}
		r := first.do("POST", w.path("queue"), nil)
		r.wantStatus(t, http.StatusOK)
		wantKeys(t, "admitted", r.fields(t), "state", "until")
		var st queueState
		r.decode(t, &st)
		if st.State != "admitted" || st.EntryID != entry || !st.Until.Equal(until) {
			t.Fatalf("rejoin after admission: want admitted until %v with entry %s, got %s", until, entry, r)
		}
		first.mustHold("A-1-1")
	})
}

func TestHolds(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	alice, bob, carol := w.newFan("alice"), w.newFan("bob"), w.newFan("carol")
	for _, f := range []*fan{alice, bob, carol} {
		f.mustAdmit()
	}

	t.Run("free seats are held all together with 201", func(t *testing.T) {
		start := time.Now()
		hs := alice.mustHold("A-1-2", "A-1-1")
		if !slices.Equal(hs.Seats, []string{"A-1-1", "A-1-2"}) {
			t.Fatalf("seats = %v, want [A-1-1 A-1-2]", hs.Seats)
		}
		if exp := hs.ExpiresAt.Sub(start); exp < 4*time.Minute || exp > 5*time.Minute+5*time.Second {
			t.Fatalf("holds expire in %v, want about HOLD_TTL (5m)", exp)
		}
	})

	t.Run("holding a seat this fan holds succeeds", func(t *testing.T) {
		hs := alice.mustHold("A-1-1")
		if !slices.Equal(hs.Seats, []string{"A-1-1", "A-1-2"}) {
			t.Fatalf("seats = %v, want [A-1-1 A-1-2]", hs.Seats)
		}
	})

	t.Run("seats held by another fan are 409 naming exactly them", func(t *testing.T) {
		e := bob.do("POST", w.path("holds"), `{"seats":["A-1-3","A-1-2","A-1-1"]}`).wantError(t, http.StatusConflict, "seat_unavailable")
		if !slices.Equal(e.Seats, []string{"A-1-1", "A-1-2"}) {
			t.Fatalf("seats = %v, want [A-1-1 A-1-2]", e.Seats)
		}
		var hs holdSet
		bob.do("GET", w.path("holds"), nil).decode(t, &hs)
		if len(hs.Seats) != 0 {
			t.Fatalf("all or nothing: bob holds %v after a refused request", hs.Seats)
		}
		carol.mustHold("A-1-3")
	})

	t.Run("a seat not in the event is 422 invalid_seat", func(t *testing.T) {
		e := bob.do("POST", w.path("holds"), `{"seats":["A-1-4","Z-9-9"]}`).wantError(t, http.StatusUnprocessableEntity, "invalid_seat")
		if !slices.Equal(e.Seats, []string{"Z-9-9"}) {
			t.Fatalf("seats = %v, want [Z-9-9]", e.Seats)
		}
		carol.mustHold("A-1-4") // bob's request held nothing
	})

	t.Run("a malformed seat id is 422 invalid_seat", func(t *testing.T) {
		// API.md: seat ids match [A-Za-z0-9_-]{1,32}; anything else cannot
		// be a seat of the event.
		for _, id := range []string{"", "A 1 1", "A-1-1\x00", "../A-1-1", "A-1-1;", "é", strings.Repeat("A", 33), "<script>"} {
			body, _ := json.Marshal(map[string][]string{"seats": {"A-2-1", id}})
			bob.do("POST", w.path("holds"), body).wantError(t, http.StatusUnprocessableEntity, "invalid_seat")
		}
		bob.mustHold("A-2-1") // none of them held it
		bob.do("DELETE", w.path("holds", "A-2-1"), nil).wantStatus(t, http.StatusNoContent)
	})

	t.Run("more seats than MAX_SEATS_PER_FAN at once is 422 seat_limit", func(t *testing.T) {
		bob.do("POST", w.path("holds"), `{"seats":["B-1-1","B-1-2","B-1-3","B-1-4","B-1-5"]}`).
			wantError(t, http.StatusUnprocessableEntity, "seat_limit")
	})

	t.Run("going past MAX_SEATS_PER_FAN with earlier holds is 422 seat_limit", func(t *testing.T) {
		bob.mustHold("B-1-1", "B-1-2", "B-1-3")
		bob.do("POST", w.path("holds"), `{"seats":["B-1-4","B-1-5"]}`).wantError(t, http.StatusUnprocessableEntity, "seat_limit")
		if hs := bob.mustHold("B-1-4"); len(hs.Seats) != maxSeats {
			t.Fatalf("bob holds %v, want %d seats", hs.Seats, maxSeats)
		}
	})

	t.Run("another session cannot use an admission: 403 not_admitted", func(t *testing.T) {
		// alice, bob and carol are admitted; dave's jar and a cookieless
		// client are not, whatever they send.
		w.newFan("dave").do("POST", w.path("holds"), `{"seats":["B-2-1"]}`).wantError(t, http.StatusForbidden, "not_admitted")
		w.anon("POST", w.path("holds"), `{"seats":["B-2-1"]}`).wantError(t, http.StatusForbidden, "not_admitted")
	})

	t.Run("GET holds lists only this fan's seats", func(t *testing.T) {
		var hs holdSet
		r := alice.do("GET", w.path("holds"), nil)
		r.wantStatus(t, http.StatusOK)
		wantKeys(t, "holds", r.fields(t), "seats", "expires_at")
		r.decode(t, &hs)
		if !slices.Equal(hs.Seats, []string{"A-1-1", "A-1-2"}) || !hs.ExpiresAt.After(time.Now()) {
			t.Fatalf("alice's holds = %+v, want [A-1-1 A-1-2] expiring later", hs)
		}
		r = w.newFan("nobody").do("GET", w.path("holds"), nil)
		r.wantStatus(t, http.StatusOK)
		if string(r.fields(t)["seats"]) != "[]" {
			t.Fatalf(`a fan without holds: want "seats":[], got %s`, r)
		}
	})

	t.Run("the session cookie copied to another client carries the holds", func(t *testing.T) {
		// The control for the forgery cases below: the cookie itself is the
		// session, so a byte-exact copy works.
		r := w.anon("GET", w.path("holds"), nil, "Cookie", "seatmap_sid="+alice.sid())
		var hs holdSet
		r.decode(t, &hs)
		if len(hs.Seats) != 2 || r.cookie("seatmap_sid") != nil {
			t.Fatalf("copied cookie: want alice's 2 seats and no new cookie, got %s (set-cookie %v)", r, r.cookies)
		}
	})

	t.Run("a forged or tampered session cookie is treated as absent", func(t *testing.T) {
		sid, eve := alice.sid(), w.newFan("eve")
		eve.do("GET", w.path("holds"), nil)
		aliceID, _, _ := strings.Cut(sid, ".")
		_, eveSig, _ := strings.Cut(eve.sid(), ".")
		forged := map[string]string{
			"last signature byte changed": flipAt(sid, len(sid)-1),
			"fan id changed":              flipAt(sid, 0),
			"signature dropped":           aliceID,
			"empty signature":             aliceID + ".",
			"another session's signature": aliceID + "." + eveSig,
			"signed with another secret":  signFan([]byte("not the server's secret"), aliceID),
			"extra byte appended":         sid + "A",
		}
		for name, v := range forged {
			r := w.anon("GET", w.path("holds"), nil, "Cookie", "seatmap_sid="+v)
			var hs holdSet
			r.decode(t, &hs)
			c := r.cookie("seatmap_sid")
			if len(hs.Seats) != 0 || c == nil || c.Value == v || c.Value == sid {
				t.Errorf("%s: want no holds and a new session cookie, got %s (set-cookie %v)", name, r, r.cookies)
			}
			w.anon("POST", w.path("holds"), `{"seats":["B-2-2"]}`, "Cookie", "seatmap_sid="+v).
				wantError(t, http.StatusForbidden, "not_admitted")
			w.anon("DELETE", w.path("holds", "A-1-1"), nil, "Cookie", "seatmap_sid="+v).
				wantError(t, http.StatusNotFound, "not_found")
		}
	})

	t.Run("releasing another fan's hold is 404 and keeps it", func(t *testing.T) {
		bob.do("DELETE", w.path("holds", "A-1-1"), nil).wantError(t, http.StatusNotFound, "not_found")
		var hs holdSet
		alice.do("GET", w.path("holds"), nil).decode(t, &hs)
		if !slices.Contains(hs.Seats, "A-1-1") {
			t.Fatalf("alice lost A-1-1: holds %v", hs.Seats)
		}
	})

	t.Run("releasing one's own hold is 204 and frees the seat", func(t *testing.T) {
		r := alice.do("DELETE", w.path("holds", "A-1-2"), nil)
		r.wantStatus(t, http.StatusNoContent)
		if len(r.body) != 0 {
			t.Fatalf("204 with a body: %s", r)
		}
		carol.mustHold("A-1-2")
		alice.do("DELETE", w.path("holds", "A-1-2"), nil).wantError(t, http.StatusNotFound, "not_found")
	})

	t.Run("releasing a seat not in the event is 404", func(t *testing.T) {
		alice.do("DELETE", w.path("holds", "Z-9-9"), nil).wantError(t, http.StatusNotFound, "not_found")
	})
}

// flipAt changes the i-th character of s to another base64url character.
func flipAt(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// signFan signs a fan id the way seatmap_sid is signed, with secret.
func signFan(secret []byte, id string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("fan\x00" + id))
	return id + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func TestCheckout(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	buyer, other := w.newFan("buyer"), w.newFan("other")
	buyer.mustAdmit()
	other.mustAdmit()
	key := strings.Repeat("k", 64) // the longest key API.md allows

	t.Run("missing Idempotency-Key is 400", func(t *testing.T) {
		buyer.do("POST", w.path("checkout"), `{"card":"4242424242424242","email":"buyer@example.com"}`).
			wantError(t, http.StatusBadRequest, "bad_request")
	})

	t.Run("Idempotency-Key over 64 characters is 400", func(t *testing.T) {
		buyer.checkout(key+"k", cardApprove).wantError(t, http.StatusBadRequest, "bad_request")
	})

	t.Run("a malformed card or email is 400", func(t *testing.T) {
		buyer.do("POST", w.path("checkout"), `{"card":"4242-4242","email":"buyer@example.com"}`, "Idempotency-Key", "bad-card").
			wantError(t, http.StatusBadRequest, "bad_request")
		buyer.do("POST", w.path("checkout"), `{"card":"4242424242424242","email":"not an address"}`, "Idempotency-Key", "bad-email").
			wantError(t, http.StatusBadRequest, "bad_request")
	})

	t.Run("a client-sent price is refused with 400", func(t *testing.T) {
		buyer.do("POST", w.path("checkout"), `{"card":"4242424242424242","email":"buyer@example.com","total_cents":1}`,
			"Idempotency-Key", "price").wantError(t, http.StatusBadRequest, "bad_request")
	})

	t.Run("without holds is 409 hold_lost", func(t *testing.T) {
		buyer.checkout("no-holds", cardApprove).wantError(t, http.StatusConflict, "hold_lost")
	})

	t.Run("a fan not admitted is 403 not_admitted", func(t *testing.T) {
		w.newFan("late").checkout("late-1", cardApprove).wantError(t, http.StatusForbidden, "not_admitted")
	})

	var declined reply
	t.Run("a declined card is 402 and the holds are kept", func(t *testing.T) {
		buyer.mustHold("A-2-1", "B-2-1")
		declined = buyer.checkout("declined", cardDecline)
		declined.wantError(t, http.StatusPaymentRequired, "payment_declined")
		var hs holdSet
		buyer.do("GET", w.path("holds"), nil).decode(t, &hs)
		if !slices.Equal(hs.Seats, []string{"A-2-1", "B-2-1"}) {
			t.Fatalf("holds after a decline = %v, want [A-2-1 B-2-1]", hs.Seats)
		}
	})

	t.Run("replaying the declined request gives the same answer", func(t *testing.T) {
		r := buyer.checkout("declined", cardDecline)
		if r.status != declined.status || string(r.body) != string(declined.body) {
			t.Fatalf("replay = %s, want %s", r, declined)
		}
	})

	var bought reply
	var o order
	t.Run("an approved card is 201 confirmed at the server's prices", func(t *testing.T) {
		bought = buyer.checkout(key, cardApprove)
		bought.wantStatus(t, http.StatusCreated)
		wantKeys(t, "order", bought.fields(t), "order_id", "status", "seats", "total_cents")
		bought.decode(t, &o)
		if o.OrderID == "" || o.Status != "confirmed" || !slices.Equal(o.Seats, []string{"A-2-1", "B-2-1"}) || o.TotalCents != priceA+priceB {
			t.Fatalf("order = %s, want confirmed [A-2-1 B-2-1] for %d", bought, priceA+priceB)
		}
		var hs holdSet
		buyer.do("GET", w.path("holds"), nil).decode(t, &hs)
		if len(hs.Seats) != 0 {
			t.Fatalf("holds after buying = %v, want none", hs.Seats)
		}
		e := other.do("POST", w.path("holds"), `{"seats":["A-2-1","A-2-2"]}`).wantError(t, http.StatusConflict, "seat_unavailable")
		if !slices.Equal(e.Seats, []string{"A-2-1"}) {
			t.Fatalf("sold seat: seats = %v, want [A-2-1]", e.Seats)
		}
	})

	t.Run("a replay with the same key and body gives the same answer and no second order", func(t *testing.T) {
		for range 2 {
			r := buyer.checkout(key, cardApprove)
			if r.status != bought.status || string(r.body) != string(bought.body) {
				t.Fatalf("replay = %s, want %s", r, bought)
			}
		}
		if n := w.queryInt(`SELECT count(*) FROM orders WHERE event_id = $1`, w.ev); n != 1 {
			t.Fatalf("%d orders in SQL, want 1", n)
		}
		if n := w.queryInt(`SELECT count(*) FROM order_items WHERE event_id = $1`, w.ev); n != 2 {
			t.Fatalf("%d order items in SQL, want 2", n)
		}
		if n := w.queryInt(`SELECT count(*) FROM sandbox_payments p JOIN checkouts c ON p.idempotency_key = 'checkout:' || c.id::text
			WHERE c.event_id = $1 AND p.status = 'captured'`, w.ev); n != 1 {
			t.Fatalf("%d captured payments, want 1", n)
		}
	})

	t.Run("the same key with another body is 409 idempotency_conflict", func(t *testing.T) {
		buyer.do("POST", w.path("checkout"), `{"card":"4242424242424242","email":"someone-else@example.com"}`, "Idempotency-Key", key).
			wantError(t, http.StatusConflict, "idempotency_conflict")
	})

	t.Run("the buyer reads the order", func(t *testing.T) {
		r := buyer.do("GET", "/api/orders/"+o.OrderID, nil)
		r.wantStatus(t, http.StatusOK)
		wantKeys(t, "order", r.fields(t), "order_id", "event", "status", "seats", "total_cents", "created_at")
		var got order
		r.decode(t, &got)
		if got.OrderID != o.OrderID || got.Event != w.ev || got.Status != "confirmed" || !slices.Equal(got.Seats, o.Seats) ||
			got.TotalCents != o.TotalCents || time.Since(got.CreatedAt) > time.Minute {
			t.Fatalf("order = %+v, want %+v", got, o)
		}
	})

	t.Run("staff read the order with the bearer token", func(t *testing.T) {
		r := w.asStaff("GET", "/api/orders/"+o.OrderID, nil)
		r.wantStatus(t, http.StatusOK)
		var got order
		r.decode(t, &got)
		if got.OrderID != o.OrderID {
			t.Fatalf("staff got %s", r)
		}
	})

	t.Run("anyone else gets 404", func(t *testing.T) {
		other.do("GET", "/api/orders/"+o.OrderID, nil).wantError(t, http.StatusNotFound, "not_found")
		w.anon("GET", "/api/orders/"+o.OrderID, nil, "Authorization", "Bearer wrong-"+w.staff).wantError(t, http.StatusNotFound, "not_found")
		w.anon("GET", "/api/orders/"+o.OrderID, nil, "Authorization", "Bearer ").wantError(t, http.StatusNotFound, "not_found")
	})

	t.Run("an unknown order is 404", func(t *testing.T) {
		buyer.do("GET", "/api/orders/00000000-0000-4000-8000-000000000000", nil).wantError(t, http.StatusNotFound, "not_found")
		buyer.do("GET", "/api/orders/not-an-order", nil).wantError(t, http.StatusNotFound, "not_found")
	})
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	f := w.newFan("fan") // not admitted: decoding comes first, so 400 beats 403

	seats := `"A-1-1"` + strings.Repeat(`,"A-1-1"`, maxBodyBytes/8)
	bodies := map[string]string{
		"malformed JSON":           `{"seats":[`,
		"not JSON":                 `seats=A-1-1`,
		"seats of the wrong type":  `{"seats":"A-1-1"}`,
		"a seat of the wrong type": `{"seats":[1]}`,
		"an array body":            `[]`,
		"an unknown field":         `{"seats":["A-1-1"],"price_cents":1}`,
		"a second value":           `{"seats":["A-1-1"]}{"seats":["A-1-2"]}`,
		"trailing garbage":         `{"seats":["A-1-1"]} x`,
		"an empty body":            ``,
		"an empty seat list":       `{"seats":[]}`,
		"null":                     `null`,
		"a body over 64 KiB":       `{"seats":[` + seats + `]}`,
	}
	if n := len(bodies["a body over 64 KiB"]); n <= maxBodyBytes {
		t.Fatalf("test body is only %d bytes", n)
	}
	for name, body := range bodies {
		t.Run(name+" is 400 bad_request", func(t *testing.T) {
			f.do("POST", w.path("holds"), body).wantError(t, http.StatusBadRequest, "bad_request")
		})
	}

	t.Run("a body just under 64 KiB is decoded", func(t *testing.T) {
		body := `{"seats":["A-1-1"]}` + strings.Repeat(" ", maxBodyBytes-30)
		f.do("POST", w.path("holds"), body).wantError(t, http.StatusForbidden, "not_admitted")
	})

	checkoutBodies := map[string]string{
		"malformed JSON":   `{"card":`,
		"a wrong type":     `{"card":4242424242424242,"email":"fan@example.com"}`,
		"an unknown field": `{"card":"4242424242424242","email":"fan@example.com","seats":["A-1-1"]}`,
		"trailing data":    `{"card":"4242424242424242","email":"fan@example.com"}]`,
		"a body over 64 KiB": `{"card":"4242424242424242","email":"fan@example.com"}` +
			strings.Repeat(" ", maxBodyBytes),
	}
	for name, body := range checkoutBodies {
		t.Run("checkout with "+name+" is 400 bad_request", func(t *testing.T) {
			f.do("POST", w.path("checkout"), body, "Idempotency-Key", "k").wantError(t, http.StatusBadRequest, "bad_request")
		})
	}
}

// maxBodyBytes is API.md's body limit.
const maxBodyBytes = 64 << 10

func TestOrigins(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(d *web.Deps) { d.AllowedOrigins = []string{"*.partner.example"} })
	join := func(f *fan, hdr ...string) reply { return f.do("POST", w.path("queue"), nil, hdr...) }

	t.Run("a cross-site POST is 403 bad_origin and changes nothing", func(t *testing.T) {
		f := w.newFan("victim")
		join(f, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site").wantError(t, http.StatusForbidden, "bad_origin")
		var st queueState
		f.do("GET", w.path("queue"), nil).decode(t, &st)
		if st.State != "none" {
			t.Fatalf("a refused join queued the fan: %+v", st)
		}
	})

	t.Run("a cross-origin POST from a browser without Sec-Fetch-Site is 403 bad_origin", func(t *testing.T) {
		join(w.newFan("old-browser"), "Origin", "http://evil.example").wantError(t, http.StatusForbidden, "bad_origin")
	})

	t.Run("a cross-site DELETE and staff POST are 403 bad_origin", func(t *testing.T) {
		w.newFan("victim").do("DELETE", w.path("holds", "A-1-1"), nil, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site").
			wantError(t, http.StatusForbidden, "bad_origin")
		w.anon("POST", "/api/staff/events/"+w.ev+"/admission", `{"paused":true}`, "Authorization", "Bearer "+w.staff,
			"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site").wantError(t, http.StatusForbidden, "bad_origin")
	})

	t.Run("an origin that only contains an allowed pattern is 403 bad_origin", func(t *testing.T) {
		for _, o := range []string{"https://partner.example.evil.example", "https://tickets.partner.example.evil.example", "https://evilpartner.example"} {
			join(w.newFan("fan"), "Origin", o, "Sec-Fetch-Site", "cross-site").wantError(t, http.StatusForbidden, "bad_origin")
		}
	})

	t.Run("a same-origin POST is accepted", func(t *testing.T) {
		join(w.newFan("fan"), "Origin", w.srv.URL, "Sec-Fetch-Site", "same-origin").wantStatus(t, http.StatusAccepted)
	})

	t.Run("a POST without Origin is accepted", func(t *testing.T) {
		join(w.newFan("api-client")).wantStatus(t, http.StatusAccepted)
	})

	t.Run("an origin matching ALLOWED_ORIGINS is accepted", func(t *testing.T) {
		join(w.newFan("partner"), "Origin", "https://tickets.partner.example", "Sec-Fetch-Site", "cross-site").wantStatus(t, http.StatusAccepted)
	})

	t.Run("a cross-site GET is answered", func(t *testing.T) {
		w.newFan("reader").do("GET", "/api/events/"+w.ev, nil, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site").
			wantStatus(t, http.StatusOK)
	})
}

func TestStaff(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	stats := "/api/staff/events/" + w.ev + "/stats"
	admission := "/api/staff/events/" + w.ev + "/admission"

	t.Run("staff endpoints without valid credentials are 401", func(t *testing.T) {
		fan := w.newFan("fan")
		fan.do("GET", "/api/events", nil)
		for name, hdr := range map[string][]string{
			"no credentials": nil,
			"a wrong token":  {"Authorization", "Bearer " + w.staff + "x"},
			"an empty token": {"Authorization", "Bearer "},
			"basic auth":     {"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("staff:"+w.staff))},
		} {
			r := fan.do("GET", stats, nil, hdr...)
			r.wantError(t, http.StatusUnauthorized, "unauthorized")
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", name)
			}
			fan.do("POST", admission, `{"paused":true}`, hdr...).wantError(t, http.StatusUnauthorized, "unauthorized")
			fan.do("POST", "/api/staff/events", newEvent(testenv.EventID(t)), hdr...).wantError(t, http.StatusUnauthorized, "unauthorized")
		}
		var st struct{ Paused bool }
		w.asStaff("GET", stats, nil).decode(t, &st)
		if st.Paused {
			t.Fatal("an unauthorized request paused admission")
		}
	})

	t.Run("stats have every field and count a sale", func(t *testing.T) {
		buyer, holder := w.newFan("buyer"), w.newFan("holder")
		buyer.mustAdmit()
		holder.mustAdmit()
		buyer.mustHold("A-1-1", "B-1-1")
		buyer.checkout("buy", cardApprove).wantStatus(t, http.StatusCreated)
		holder.mustHold("A-2-2")

		r := w.asStaff("GET", stats, nil)
		r.wantStatus(t, http.StatusOK)
		wantKeys(t, "stats", r.fields(t), "sold", "held", "available", "queue_length", "admitted", "admit_rate",
			"revenue_cents", "orders", "sales_per_minute")
		var st struct {
			Sold, Held, Available, Orders int
			QueueLength                   int   `json:"queue_length"`
			Admitted                      int   `json:"admitted"`
			AdmitRate                     int   `json:"admit_rate"`
			RevenueCents                  int64 `json:"revenue_cents"`
			SalesPerMinute                []struct {
				Minute time.Time `json:"minute"`
				Seats  int       `json:"seats"`
			} `json:"sales_per_minute"`
		}
		r.decode(t, &st)
		sold := 0
		for _, m := range st.SalesPerMinute {
			if m.Minute.IsZero() {
				t.Errorf("sales_per_minute entry without a minute: %s", r)
			}
			sold += m.Seats
		}
		if st.Sold != 2 || st.Held != 1 || st.Available != seatsTotal-3 || st.Orders != 1 || st.RevenueCents != priceA+priceB ||
			st.Admitted != 2 || st.QueueLength != 0 || st.AdmitRate != admitRate || sold != 2 {
			t.Fatalf("stats = %s; want sold 2, held 1, available %d, 1 order of %d, 2 admitted, none waiting, rate %d, 2 seats per minute",
				r, seatsTotal-3, priceA+priceB, admitRate)
		}
	})

	t.Run("pausing then setting the rate answers the new settings", func(t *testing.T) {
		r := w.asStaff("POST", admission, `{"paused":true}`)
		r.wantStatus(t, http.StatusOK)
		if m := r.fields(t); string(m["paused"]) != "true" || string(m["rate"]) != strconv.Itoa(admitRate) {
			t.Fatalf("pause: got %s", r)
		}
		r = w.asStaff("POST", admission, `{"rate":7}`)
		r.wantStatus(t, http.StatusOK)
		if m := r.fields(t); string(m["paused"]) != "true" || string(m["rate"]) != "7" {
			t.Fatalf("rate: got %s", r)
		}
		var st struct {
			AdmitRate int `json:"admit_rate"`
		}
		w.asStaff("GET", stats, nil).decode(t, &st)
		if st.AdmitRate != 7 {
			t.Fatalf("stats admit_rate = %d, want 7", st.AdmitRate)
		}
		if n := w.queryInt(`SELECT count(*) FROM audit_log WHERE event_id = $1 AND action = 'admission'`, w.ev); n != 2 {
			t.Fatalf("%d admission changes audited, want 2", n)
		}
	})

	for name, body := range map[string]string{
		"an empty object":   `{}`,
		"a negative rate":   `{"rate":-1}`,
		"a rate too high":   `{"rate":1000001}`,
		"a rate string":     `{"rate":"fast"}`,
		"a paused string":   `{"paused":"yes"}`,
		"an unknown field":  `{"rate":5,"burst":10}`,
		"malformed JSON":    `{"rate":`,
		"two values":        `{"rate":5}{"rate":6}`,
		"an empty body":     ``,
		"a fractional rate": `{"rate":1.5}`,
	} {
		t.Run("admission with "+name+" is 400", func(t *testing.T) {
			w.asStaff("POST", admission, body).wantError(t, http.StatusBadRequest, "bad_request")
		})
	}

	t.Run("admission and stats of an unknown event are 404", func(t *testing.T) {
		other := testenv.EventID(t)
		w.asStaff("POST", "/api/staff/events/"+other+"/admission", `{"rate":5}`).wantError(t, http.StatusNotFound, "not_found")
		w.asStaff("GET", "/api/staff/events/"+other+"/stats", nil).wantError(t, http.StatusNotFound, "not_found")
	})

	t.Run("creating an event is 201 and then it is listed", func(t *testing.T) {
		id := testenv.EventID(t)
		r := w.asStaff("POST", "/api/staff/events", newEvent(id))
		r.wantStatus(t, http.StatusCreated)
		var ev struct {
			ID         string `json:"id"`
			SeatsTotal int    `json:"seats_total"`
		}
		r.decode(t, &ev)
		if ev.ID != id || ev.SeatsTotal != seatsTotal {
			t.Fatalf("created %s, want %s with %d seats", r, id, seatsTotal)
		}
		w.newFan("fan").do("GET", "/api/events/"+id, nil).wantStatus(t, http.StatusOK)
		if n := w.queryInt(`SELECT count(*) FROM audit_log WHERE event_id = $1 AND action = 'create_event'`, id); n != 1 {
			t.Fatalf("%d event creations audited, want 1", n)
		}

		t.Run("creating it again is 409 event_exists", func(t *testing.T) {
			w.asStaff("POST", "/api/staff/events", newEvent(id)).wantError(t, http.StatusConflict, "event_exists")
		})
	})

	t.Run("creating an invalid event is 400", func(t *testing.T) {
		noSections := newEvent(testenv.EventID(t))
		noSections.Sections = nil
		w.asStaff("POST", "/api/staff/events", noSections).wantError(t, http.StatusBadRequest, "bad_request")
		w.asStaff("POST", "/api/staff/events", `{"id":"x","name":"y","seats":1}`).wantError(t, http.StatusBadRequest, "bad_request")
	})
}

func TestRateLimits(t *testing.T) {
	t.Parallel()

	t.Run("a burst of holds from one session is 429 with Retry-After", func(t *testing.T) {
		t.Parallel()
		// 0.01/s: no token comes back during the test.
		w := newWorld(t, func(d *web.Deps) { d.Limits = web.Limits{SessionRate: 0.01, SessionBurst: 3} })
		f := w.newFan("bot")
		for i := range 3 {
			if r := f.do("POST", w.path("holds"), `{"seats":["A-1-1"]}`); r.status == http.StatusTooManyRequests {
				t.Fatalf("request %d of a burst of 3 refused: %s", i+1, r)
			}
		}
		r := f.do("POST", w.path("holds"), `{"seats":["A-1-1"]}`)
		r.wantError(t, http.StatusTooManyRequests, "rate_limited")
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Fatalf("Retry-After %q, want whole seconds >= 1", r.header.Get("Retry-After"))
		}
		// The limit is per session and per action.
		w.newFan("person").do("POST", w.path("holds"), `{"seats":["A-1-1"]}`).wantError(t, http.StatusForbidden, "not_admitted")
		f.do("POST", w.path("queue"), nil).wantStatus(t, http.StatusAccepted)
	})

	t.Run("a burst of joins from one address is 429 with Retry-After", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, func(d *web.Deps) { d.Limits = web.Limits{AddressRate: 0.01, AddressBurst: 3} })
		for i := range 3 {
			w.newFan("fan"+strconv.Itoa(i)).do("POST", w.path("queue"), nil).wantStatus(t, http.StatusAccepted)
		}
		r := w.newFan("one-too-many").do("POST", w.path("queue"), nil)
		r.wantError(t, http.StatusTooManyRequests, "rate_limited")
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Fatalf("Retry-After %q, want whole seconds >= 1", r.header.Get("Retry-After"))
		}
	})
}

func TestSecurityHeadersAndCookies(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)

	t.Run("every response carries the security headers", func(t *testing.T) {
		for _, r := range []reply{
			w.anon("GET", "/api/events", nil),
			w.anon("GET", "/api/events/"+testenv.EventID(t), nil),
			w.anon("POST", w.path("queue"), nil, "Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"),
			w.anon("GET", "/api/staff/events/"+w.ev+"/stats", nil),
			w.anon("GET", "/healthz", nil),
		} {
			csp := r.header.Get("Content-Security-Policy")
			if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("%s: CSP %q lacks default-src 'self' or frame-ancestors 'none'", r.path, csp)
			}
			if v := r.header.Get("X-Content-Type-Options"); v != "nosniff" {
				t.Errorf("%s: X-Content-Type-Options %q", r.path, v)
			}
			if v := r.header.Get("Referrer-Policy"); v == "" || v == "unsafe-url" {
				t.Errorf("%s: Referrer-Policy %q", r.path, v)
			}
		}
	})

	t.Run("a new session cookie is HttpOnly and SameSite=Lax, not Secure over HTTP", func(t *testing.T) {
		c := w.anon("GET", w.path("queue"), nil).cookie("seatmap_sid")
		if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure || c.Path != "/" {
			t.Fatalf("seatmap_sid = %+v, want HttpOnly, SameSite=Lax, Path=/, not Secure", c)
		}
	})

	t.Run("over HTTPS the session cookie is Secure with the __Host- prefix", func(t *testing.T) {
		r := w.anon("GET", w.path("queue"), nil, "X-Forwarded-Proto", "https")
		c := r.cookie("__Host-seatmap_sid")
		if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || !c.Secure || c.Path != "/" || c.Domain != "" {
			t.Fatalf("__Host-seatmap_sid = %+v, want Secure, HttpOnly, SameSite=Lax, Path=/, no Domain", c)
		}
		if r.cookie("seatmap_sid") != nil {
			t.Fatal("over HTTPS the unprefixed cookie must not be set")
		}
		// The prefixed cookie identifies the fan on the next HTTPS request.
		again := w.anon("GET", w.path("queue"), nil, "X-Forwarded-Proto", "https", "Cookie", c.Name+"="+c.Value)
		if again.cookie("__Host-seatmap_sid") != nil {
			t.Fatal("a valid __Host- cookie was replaced")
		}
	})

	t.Run("every fan API call without a cookie gets one and a valid one is kept", func(t *testing.T) {
		for _, path := range []string{"/api/events", "/api/events/" + w.ev, w.path("queue"), w.path("holds"),
			"/api/orders/00000000-0000-4000-8000-000000000000"} {
			f := w.newFan("fan")
			if r := f.do("GET", path, nil); r.cookie("seatmap_sid") == nil {
				t.Errorf("GET %s without a cookie: no seatmap_sid set (%s)", path, r)
				continue
			}
			if r := f.do("GET", path, nil); r.cookie("seatmap_sid") != nil {
				t.Errorf("GET %s with a valid cookie: a new one was set", path)
			}
		}
	})
}
