package booking_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seatmap/booking"
)

// testAdmission is a booking.Admission over keys of the test's own: the
// value is the Unix ms until which the fan is admitted, as the admitter
// writes it.
type testAdmission struct {
	rdb redis.UniversalClient
	ev  string
}

func (a testAdmission) AdmissionKey(eventID, fanID string) string {
	return "testadmit:{" + eventID + "}:" + fanID
}

func (a testAdmission) Admitted(ctx context.Context, eventID, fanID string) (time.Time, error) {
	v, err := a.rdb.Get(ctx, a.AdmissionKey(eventID, fanID)).Int64()
	if err != nil || v <= time.Now().UnixMilli() {
		return time.Time{}, booking.NotAdmitted()
	}
	return time.UnixMilli(v), nil
}

func (a testAdmission) admit(t *testing.T, fan string, until time.Time) {
	t.Helper()
	if err := a.rdb.Set(context.Background(), a.AdmissionKey(a.ev, fan), strconv.FormatInt(until.UnixMilli(), 10), 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestHoldAndCheckoutRequireAdmission: with an Admission, the hold and
// claim scripts refuse a fan whose admission key is missing or in the past
// (not_admitted), and change nothing; an admitted fan holds and buys.
func TestHoldAndCheckoutRequireAdmission(t *testing.T) {
	t.Parallel()
	e := newEnv(t, booking.Config{}, 1, 1, 6, 1000)
	ctx := context.Background()
	adm := testAdmission{rdb: e.rdb, ev: e.ev}

	for name, until := range map[string]time.Time{"never admitted": {}, "admission expired": time.Now().Add(-time.Second)} {
		t.Run(name, func(t *testing.T) {
			fan := "fan-" + strconv.Itoa(len(name))
			if !until.IsZero() {
				adm.admit(t, fan, until)
			}
			_, err := e.svc.Hold(ctx, e.ev, fan, []string{"A-1-1"}, adm)
			wantCode(t, err, booking.ECodeNotAdmitted)
			if e.rdb.Exists(ctx, e.holdKey("A-1-1")).Val() != 0 {
				t.Fatal("a fan who was not admitted took a hold")
			}
			// Not admitted comes first, also for a request that is wrong otherwise.
			_, err = e.svc.Hold(ctx, e.ev, fan, []string{"Z-9-9"}, adm)
			wantCode(t, err, booking.ECodeNotAdmitted)

			e.mustHold(fan, "A-1-2") // held on the fan's behalf, without the check
			req := e.checkoutReq(fan, "k-"+fan, booking.CardApprove)
			req.Admission = adm
			_, err = e.svc.Checkout(ctx, req)
			wantCode(t, err, booking.ECodeNotAdmitted)
			if n := e.queryInt(`SELECT count(*) FROM checkouts WHERE event_id = $1 AND session_id = $2`, e.ev, fan); n != 0 {
				t.Fatalf("%d checkout rows for a fan who was not admitted", n)
			}
			e.rdb.Del(ctx, e.holdKey("A-1-2"), "fanholds:{"+e.ev+"}:"+fan)
		})
	}

	t.Run("admitted: holds and buys; the same key replays after the admission ends", func(t *testing.T) {
		adm.admit(t, "ok", time.Now().Add(time.Minute))
		if _, err := e.svc.Hold(ctx, e.ev, "ok", []string{"A-1-3"}, adm); err != nil {
			t.Fatalf("hold: %v", err)
		}
		req := e.checkoutReq("ok", "k-ok", booking.CardApprove)
		req.Admission = adm
		o, err := e.svc.Checkout(ctx, req)
		if err != nil {
			t.Fatalf("checkout: %v", err)
		}
		adm.admit(t, "ok", time.Now().Add(-time.Second))
		replay, err := e.svc.Checkout(ctx, req)
		if err != nil || replay.ID != o.ID {
			t.Fatalf("replay after the admission ended: %+v, %v; want order %s", replay, err, o.ID)
		}
		req.IdempotencyKey = "k-ok-2"
		_, err = e.svc.Checkout(ctx, req)
		wantCode(t, err, booking.ECodeNotAdmitted)
	})
}
