package realtime

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestJSONEncoder_Messages(t *testing.T) {
	enc := JSONEncoder{}
	cat := newTestCatalog(3)
	snap := &Snapshot{EventID: "ev", Seq: 42, Catalog: cat, Seats: []SeatView{{"S0", Available}, {"S1", Held}, {"S2", Sold}}}
	batch := &Batch{EventID: "ev", Seq: 43, Catalog: cat, Changes: []Change{{Seat: "S0", State: Held, Holder: "ann"}, {Seat: "S1", State: Available}}}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	join := func(a, b []byte) []byte { return append(append([]byte{}, a...), b...) }
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"snapshot without holds", join(enc.Snapshot(snap), enc.SnapshotMine(snap, nil)),
			`{"type":"snapshot","seq":42,"seats":{"S0":"available","S1":"held","S2":"sold"},"mine":[]}`},
		{"snapshot of a holder", join(enc.Snapshot(snap), enc.SnapshotMine(snap, []string{"S1"})),
			`{"type":"snapshot","seq":42,"seats":{"S0":"available","S1":"held","S2":"sold"},"mine":["S1"]}`},
		{"seats for others", enc.Seats(batch, ""),
			`{"type":"seats","seq":43,"changes":[{"seat":"S0","state":"held","mine":false},{"seat":"S1","state":"available","mine":false}]}`},
		{"seats for the holder", enc.Seats(batch, "ann"),
			`{"type":"seats","seq":43,"changes":[{"seat":"S0","state":"held","mine":true},{"seat":"S1","state":"available","mine":false}]}`},
		{"hold_expiring", enc.HoldExpiring("S0", at), `{"type":"hold_expiring","seat":"S0","expires_at":"2030-01-02T02:04:05Z"}`},
		{"queue", enc.Queue(QueueStatus{State: StateWaiting, Position: 12, Ahead: 11, ETASeconds: 3}),
			`{"type":"queue","position":12,"ahead":11,"eta_seconds":3}`},
		{"pre-queue", enc.Queue(QueueStatus{State: StateWaiting, ETASeconds: 60, PreQueue: true}),
			`{"type":"queue","position":0,"ahead":0,"eta_seconds":60,"pre_queue":true}`},
		{"admitted", enc.Admitted(at), `{"type":"admitted","until":"2030-01-02T02:04:05Z"}`},
		{"error", enc.Error("bad_request", `say "ping" <b>`), `{"type":"error","code":"bad_request","message":"say \"ping\" \u003cb\u003e"}`},
		{"pong", enc.Pong(), `{"type":"pong"}`},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, tc.got, tc.want)
		}
		if !json.Valid(tc.got) {
			t.Errorf("%s: invalid JSON %s", tc.name, tc.got)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"A-1-1", "", "quote\"back\\slash", "ctl\x01\n", "héllo", "bad\xffutf8", "<script>&"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q encoded as invalid JSON %s", s, got)
			continue
		}
		want, _ := json.Marshal(s)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q encoded as %s, encoding/json says %s", s, got, want)
		}
	}
}
