package loadtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
)

// recorder is a visitor that keeps everything it is told.
type recorder struct {
	begins  int
	seats   map[string]uint8
	mine    []string
	changes []string // "seat=state/mine"
}

func (r *recorder) snapshotBegin() { r.begins++; r.seats = map[string]uint8{} }
func (r *recorder) snapshotSeat(id []byte, st uint8) {
	r.seats[string(id)] = st
}
func (r *recorder) snapshotMine(id []byte) { r.mine = append(r.mine, string(id)) }
func (r *recorder) change(id []byte, st uint8, mine bool) {
	r.changes = append(r.changes, fmt.Sprintf("%s=%s/%v", id, stateName(st), mine))
}

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    header
		seats   map[string]uint8
		mine    []string
		changes []string
	}{
		{
			name: "queue position",
			in:   `{"type":"queue","position":42,"ahead":41,"eta_seconds":3}`,
			want: header{typ: msgQueue, position: 42},
		},
		{
			name: "admitted with until",
			in:   `{"type":"admitted","until":"2030-01-01T00:00:00Z"}`,
			want: header{typ: msgAdmitted},
		},
		{
			name:  "snapshot with seats and mine",
			in:    `{"type":"snapshot","seq":7,"seats":{"A-1-1":"available","A-1-2":"held","A-1-3":"sold"},"mine":["A-1-2"]}`,
			want:  header{typ: msgSnapshot, seq: 7, hasSeq: true},
			seats: map[string]uint8{"A-1-1": stAvailable, "A-1-2": stHeld, "A-1-3": stSold},
			mine:  []string{"A-1-2"},
		},
		{
			name:  "snapshot keys in another order, with whitespace",
			in:    " {\n \"mine\" : [ ] , \"seats\" : { \"B-2-9\" : \"sold\" } , \"seq\" : 12 , \"type\" : \"snapshot\" }\n",
			want:  header{typ: msgSnapshot, seq: 12, hasSeq: true},
			seats: map[string]uint8{"B-2-9": stSold},
		},
		{
			name:    "seats batch",
			in:      `{"type":"seats","seq":8,"changes":[{"seat":"A-1-1","state":"held","mine":false},{"mine":true,"state":"available","seat":"A-1-2"}]}`,
			want:    header{typ: msgSeats, seq: 8, hasSeq: true},
			changes: []string{"A-1-1=held/false", "A-1-2=available/true"},
		},
		{
			name:    "change with an unknown field and an unknown state",
			in:      `{"type":"seats","seq":9,"changes":[{"seat":"X","state":"reserved","extra":{"a":[1,2,{"b":null}]},"mine":false}]}`,
			want:    header{typ: msgSeats, seq: 9, hasSeq: true},
			changes: []string{"X=unknown/false"},
		},
		{
			name: "error message",
			in:   `{"type":"error","code":"bad_request","message":"only \"ping\" is allowed \u00e9"}`,
			want: header{typ: msgError, code: "bad_request"},
		},
		{
			name:  "escaped seat id is decoded",
			in:    `{"type":"snapshot","seq":1,"seats":{"A\u002d1":"available"},"mine":[]}`,
			want:  header{typ: msgSnapshot, seq: 1, hasSeq: true},
			seats: map[string]uint8{"A-1": stAvailable},
		},
		{
			name: "unknown type and fields are skipped",
			in:   `{"type":"future","n":-1.5e3,"ok":true,"z":null,"list":[[],{}],"s":"x"}`,
			want: header{typ: msgUnknown},
		},
		{
			name: "pong",
			in:   `{"type":"pong"}`,
			want: header{typ: msgPong},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{}
			h, err := parseMessage([]byte(tt.in), r)
			if err != nil {
				t.Fatalf("parseMessage: %v", err)
			}
			if h != tt.want {
				t.Errorf("header = %+v, want %+v", h, tt.want)
			}
			if tt.seats != nil && !reflect.DeepEqual(r.seats, tt.seats) {
				t.Errorf("seats = %v, want %v", r.seats, tt.seats)
			}
			if tt.seats == nil && r.begins != 0 {
				t.Errorf("snapshotBegin called %d times for a frame without a seats object", r.begins)
			}
			if !reflect.DeepEqual(r.mine, tt.mine) {
				t.Errorf("mine = %v, want %v", r.mine, tt.mine)
			}
			if !reflect.DeepEqual(r.changes, tt.changes) {
				t.Errorf("changes = %v, want %v", r.changes, tt.changes)
			}
		})
	}
}

func TestParseMessageRejectsMalformed(t *testing.T) {
	for _, in := range []string{
		``,
		`[]`,
		`{"type":"seats"`,
		`{"type":"seats",}`,
		`{"type":"seats"} x`,
		`{"type":seats}`,
		`{"seq":-1}`,
		`{"seq":99999999999999999999999}`,
		`{"changes":[{"state":"held"}]}`,
		`{"changes":[{"seat":"A","mine":1}]}`,
		`{"changes":{}}`,
		`{"seats":{"A":1}}`,
		`{"type":"a` + "\x01" + `"}`,
		`{"x":tru}`,
		`{"x":[1,2}`,
		`{"x":"\q"}`,
		`{"x":` + deep(40) + `}`,
	} {
		if _, err := parseMessage([]byte(in), &recorder{}); !errors.Is(err, errFrame) {
			t.Errorf("parseMessage(%q) error = %v, want errFrame", in, err)
		}
	}
}

func deep(n int) string {
	s := "1"
	for range n {
		s = "[" + s + "]"
	}
	return s
}

// TestParseMessageAgreesWithEncodingJSON builds random frames with
// encoding/json and checks the parser reads back the same seats.
func TestParseMessageAgreesWithEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	states := []string{"available", "held", "sold"}
	for i := range 200 {
		seats := map[string]string{}
		type change struct {
			Seat  string `json:"seat"`
			State string `json:"state"`
			Mine  bool   `json:"mine"`
		}
		var changes []change
		for j := range rng.IntN(50) {
			id := fmt.Sprintf("S%d-%d", i, j)
			if rng.IntN(10) == 0 {
				id += "\"\\é<>" // escapes must round-trip
			}
			seats[id] = states[rng.IntN(3)]
			changes = append(changes, change{id, states[rng.IntN(3)], rng.IntN(2) == 0})
		}
		snap, _ := json.Marshal(map[string]any{"type": "snapshot", "seq": i, "seats": seats, "mine": []string{}})
		r := &recorder{}
		h, err := parseMessage(snap, r)
		if err != nil || h.typ != msgSnapshot || h.seq != uint64(i) {
			t.Fatalf("snapshot %d: header %+v, err %v", i, h, err)
		}
		if len(r.seats) != len(seats) {
			t.Fatalf("snapshot %d: %d seats, want %d", i, len(r.seats), len(seats))
		}
		for id, st := range seats {
			if got := stateName(r.seats[id]); got != st {
				t.Fatalf("snapshot %d: seat %q = %s, want %s", i, id, got, st)
			}
		}
		batch, _ := json.Marshal(map[string]any{"type": "seats", "seq": i + 1, "changes": changes})
		r = &recorder{}
		if _, err := parseMessage(batch, r); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		var want []string
		for _, c := range changes {
			want = append(want, fmt.Sprintf("%s=%s/%v", c.Seat, c.State, c.Mine))
		}
		sort.Strings(want)
		sort.Strings(r.changes)
		if !reflect.DeepEqual(r.changes, want) {
			t.Fatalf("batch %d: changes %v, want %v", i, r.changes, want)
		}
	}
}

func BenchmarkParseSnapshot10k(b *testing.B) {
	seats := map[string]string{}
	for i := range 10000 {
		seats[fmt.Sprintf("A-%d-%d", i/50, i%50)] = "available"
	}
	frame, _ := json.Marshal(map[string]any{"type": "snapshot", "seq": 1, "seats": seats, "mine": []string{}})
	v := &venue{index: map[string]int32{}}
	for id := range seats {
		v.index[id] = int32(len(v.ids))
		v.ids = append(v.ids, id)
		v.row = append(v.row, 0)
	}
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := parseMessage(frame, &frameRecorder{v: v}); err != nil {
			b.Fatal(err)
		}
	}
}
