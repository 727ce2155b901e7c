package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestCheckoutReplayAfterAdmissionEnds: a retry with the same key and body
// gets the stored answer even when the fan's admission has ended since;
// a new checkout without admission is still refused.
func TestCheckoutReplayAfterAdmissionEnds(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	buyer := w.newFan("replayer")
	buyer.mustAdmit()
	buyer.mustHold("A-1-1")
	first := buyer.checkout("replay-key", "4242424242424242")
	first.wantStatus(t, http.StatusCreated)

	// End the admission: delete this event's admission keys.
	ctx := context.Background()
	keys, err := w.rdb.Keys(ctx, "admit:{"+w.ev+"}:*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("admission keys %v, %v", keys, err)
	}
	if err := w.rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}

	again := buyer.checkout("replay-key", "4242424242424242")
	again.wantStatus(t, http.StatusCreated)
	if strings.TrimSpace(string(again.body)) != strings.TrimSpace(string(first.body)) {
		t.Fatalf("replay body %s, want %s", again.body, first.body)
	}
	buyer.checkout("new-key", "4242424242424242").wantError(t, http.StatusForbidden, "not_admitted")
	buyer.do("POST", w.path("checkout"), map[string]string{"card": "4242424242424242", "email": "other@example.com"},
		"Idempotency-Key", "replay-key").wantError(t, http.StatusForbidden, "not_admitted")
	if n := w.queryInt(`SELECT count(*) FROM orders WHERE event_id = $1`, w.ev); n != 1 {
		t.Fatalf("%d orders, want 1", n)
	}
}

func TestUnknownAPIRouteAndEmptyHolds(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.anon("GET", "/api/nope", nil).wantError(t, http.StatusNotFound, "not_found")
	f := w.newFan("empty")
	r := f.do("GET", w.path("holds"), nil)
	r.wantStatus(t, http.StatusOK)
	if got := strings.TrimSpace(string(r.body)); got != `{"expires_at":null,"seats":[]}` {
		t.Fatalf("empty holds = %s", got)
	}
}
