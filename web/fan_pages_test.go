package web_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// htmx marks the page's own requests.
var hx = []string{"HX-Request", "true"}

// seatTag returns the start tag of the element with attr="seat" in body.
func seatTag(t *testing.T, body []byte, attr, seat string) string {
	t.Helper()
	m := regexp.MustCompile(`<[^>]*\b`+attr+`="`+regexp.QuoteMeta(seat)+`"[^>]*>`).FindAll(body, -1)
	if len(m) != 1 {
		t.Fatalf("want one element with %s=%q, found %d", attr, seat, len(m))
	}
	return string(m[0])
}

func TestSeatListAndSnapshotShowTheFansView(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ana, bob, cyd := w.newFan("ana"), w.newFan("bob"), w.newFan("cyd")

	t.Run("fans not admitted get the reason in the list's place", func(t *testing.T) {
		r := ana.do("GET", "/events/"+w.ev+"/seat-list", nil, hx...)
		r.wantStatus(t, http.StatusForbidden)
		body := string(r.body)
		if !strings.Contains(body, `id="seat-list"`) || !strings.Contains(body, "not your turn yet") || strings.Contains(body, `"error"`) {
			t.Fatalf("body: %s", body)
		}
		ana.do("GET", "/events/"+w.ev+"/seatmap", nil).wantStatus(t, http.StatusForbidden)
	})

	for _, f := range []*fan{ana, bob, cyd} {
		f.mustAdmit()
	}
	ana.mustHold("A-1-2")
	bob.mustHold("A-1-4")
	cyd.mustHold("B-1-1")
	cyd.checkout("k1", cardApprove).wantStatus(t, http.StatusCreated)

	t.Run("the list shows available seats in groups and the fan's own to release", func(t *testing.T) {
		r := ana.do("GET", "/events/"+w.ev+"/seat-list", nil, hx...)
		r.wantStatus(t, http.StatusOK)
		if tag := seatTag(t, r.body, "data-list-seat", "A-1-2"); !strings.Contains(tag, `data-state="mine"`) ||
			!strings.Contains(tag, `hx-post="/events/`+w.ev+`/seats/A-1-2/release"`) {
			t.Errorf("own seat: %s", tag)
		}
		if tag := seatTag(t, r.body, "data-list-seat", "A-1-5"); !strings.Contains(tag, `hx-post="/events/`+w.ev+`/seats/A-1-5/hold"`) {
			t.Errorf("free seat: %s", tag)
		}
		for _, gone := range []string{"A-1-4", "B-1-1"} {
			if strings.Contains(string(r.body), `data-list-seat="`+gone+`"`) {
				t.Errorf("%s (held by another fan or sold) is listed", gone)
			}
		}
		// 20 seats − 1 sold − 2 held; B row 1 has seats 2–5 together.
		for _, want := range []string{"17 seats available.", "You hold 1.", "4 seats together", "Held by you: 1 seat"} {
			if !strings.Contains(string(r.body), want) {
				t.Errorf("list lacks %q", want)
			}
		}
	})

	t.Run("the snapshot has every seat in its state for this fan", func(t *testing.T) {
		r := ana.do("GET", "/events/"+w.ev+"/seatmap", nil)
		r.wantStatus(t, http.StatusOK)
		for seat, state := range map[string]string{"A-1-1": "available", "A-1-2": "mine", "A-1-4": "held", "B-1-1": "sold"} {
			if tag := seatTag(t, r.body, "data-seat", seat); !strings.Contains(tag, `data-state="`+state+`"`) {
				t.Errorf("%s: %s, want %s", seat, tag, state)
			}
		}
		if n := strings.Count(string(r.body), "data-seat="); n != seatsTotal {
			t.Errorf("%d seats in the snapshot, want %d", n, seatsTotal)
		}
	})
}

func TestSeatPostsTriggerTheListRefresh(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ana := w.newFan("ana")
	ana.mustAdmit()
	r := ana.do("POST", "/events/"+w.ev+"/seats/A-2-2/hold", nil, hx...)
	r.wantStatus(t, http.StatusOK)
	if got := r.header.Get("HX-Trigger"); got != "seats-changed" {
		t.Errorf("HX-Trigger = %q", got)
	}
	r = ana.do("POST", "/events/"+w.ev+"/seats/A-2-2/release", nil, hx...)
	r.wantStatus(t, http.StatusOK)
	if got := r.header.Get("HX-Trigger"); got != "seats-changed" {
		t.Errorf("HX-Trigger after release = %q", got)
	}
}

func TestExtendHoldsOnceFromThePage(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	ana, bob := w.newFan("ana"), w.newFan("bob")
	extend := "/events/" + w.ev + "/holds/extend"

	bob.do("POST", extend, nil, hx...).wantStatus(t, http.StatusForbidden)

	ana.mustAdmit()
	before := ana.mustHold("A-1-1", "A-1-2")
	r := ana.do("POST", extend, nil, hx...)
	r.wantStatus(t, http.StatusOK)
	body := string(r.body)
	for _, want := range []string{`id="alert"`, `id="hold-panel"`, `data-testid="extend-used"`, `data-kind="extended"`,
		"held 2 minutes longer"} {
		if !strings.Contains(body, want) {
			t.Errorf("answer lacks %q", want)
		}
	}
	var after holdSet
	ana.do("GET", w.path("holds"), nil).decode(t, &after)
	if d := after.ExpiresAt.Sub(before.ExpiresAt); d < 119*time.Second || d > 121*time.Second {
		t.Errorf("expiry moved by %v, want 2m", d)
	}
	if m := regexp.MustCompile(`data-expires-at="([^"]+)"`).FindStringSubmatch(body); m == nil || m[1] != after.ExpiresAt.UTC().Format(time.RFC3339) {
		t.Errorf("the panel's timer does not follow the new expiry %v: %v", after.ExpiresAt, m)
	}
	if n := w.queryInt(`SELECT count(*) FROM audit_log WHERE event_id = $1 AND action = 'hold_extended' AND actor = $2`,
		w.ev, "fan:"+ana.sid()[:6]); n != 1 {
		t.Errorf("%d audit entries, want 1", n)
	}

	r = ana.do("POST", extend, nil, hx...)
	r.wantStatus(t, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "You already used your extension.") || !strings.Contains(string(r.body), `role="alert"`) {
		t.Errorf("second extension: %s", r.body)
	}
	if ttl := w.rdb.PTTL(context.Background(), "hold:{"+w.ev+"}:A-1-1").Val(); ttl > 7*time.Minute+time.Second {
		t.Errorf("hold extended twice: %v left", ttl)
	}
}
