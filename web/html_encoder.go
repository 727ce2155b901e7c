package web

import (
	"bytes"
	"context"
	"time"

	"github.com/a-h/templ"

	"seatmap/booking"
	"seatmap/realtime"
	"seatmap/templates"
)

// htmlEncoder renders the hub's messages as htmx out-of-band fragments for
// the event page's socket (/events/{event}/ws): each element carries
// hx-swap-oob and replaces the element of the same id. It is the second
// format of the one fan-out path (the JSON API socket is the first).
type htmlEncoder struct{}

var _ realtime.Encoder = htmlEncoder{}

func renderBytes(c templ.Component) []byte {
	var b bytes.Buffer
	if err := c.Render(context.Background(), &b); err != nil {
		// Rendering into a buffer fails only on a programming error.
		panic("render fragment: " + err.Error())
	}
	return b.Bytes()
}

func (htmlEncoder) Format() string { return "html" }

// seatInfo describes seat id of catalog cat in the given state.
func seatInfo(eventID string, cat *booking.Catalog, id, state string) templates.SeatInfo {
	cs := cat.Seats[id]
	return templates.SeatInfo{EventID: eventID, ID: id, Section: cs.Section, Row: cs.Row, Number: cs.Number,
		PriceCents: cs.PriceCents, State: state}
}

// sectionViews lays the catalog out with each seat's state from state().
func sectionViews(eventID string, cat *booking.Catalog, state func(seat string) string) []templates.SectionView {
	out := make([]templates.SectionView, 0, len(cat.Sections))
	for _, sec := range cat.Sections {
		sv := templates.SectionView{ID: sec.ID, Name: sec.Name, PriceCents: sec.PriceCents}
		for _, row := range sec.Rows {
			rv := templates.RowView{Label: row.Label}
			for _, seat := range row.Seats {
				rv.Seats = append(rv.Seats, seatInfo(eventID, cat, seat.ID, state(seat.ID)))
			}
			sv.Rows = append(sv.Rows, rv)
		}
		out = append(out, sv)
	}
	return out
}

func (htmlEncoder) Snapshot(s *realtime.Snapshot) []byte {
	states := make(map[string]string, len(s.Seats))
	for _, v := range s.Seats {
		states[v.Seat] = v.State.String()
	}
	return renderBytes(templates.SeatMap(sectionViews(s.EventID, s.Catalog, func(id string) string {
		if st, ok := states[id]; ok {
			return st
		}
		return "available"
	})))
}

func (htmlEncoder) SnapshotMine(s *realtime.Snapshot, mine []string) []byte {
	var b bytes.Buffer
	for _, id := range mine {
		templates.SeatButton(seatInfo(s.EventID, s.Catalog, id, "mine"), true).Render(context.Background(), &b)
	}
	return b.Bytes()
}

func (htmlEncoder) Seats(batch *realtime.Batch, fan string) []byte {
	var b bytes.Buffer
	for _, c := range batch.Changes {
		state := c.State.String()
		if c.Mine(fan) {
			state = "mine"
		}
		templates.SeatButton(seatInfo(batch.EventID, batch.Catalog, c.Seat, state), true).Render(context.Background(), &b)
	}
	return b.Bytes()
}

func (htmlEncoder) HoldExpiring(seat string, expiresAt time.Time) []byte {
	return renderBytes(templates.HoldExpiring(seat, expiresAt))
}

func (htmlEncoder) Queue(q realtime.QueueStatus) []byte {
	switch q.State {
	case realtime.StateAdmitted:
		return renderBytes(templates.QueueAdmitted(q.Until))
	case realtime.StateWaiting:
		return renderBytes(templates.QueueWaiting(q.Position, q.Ahead, q.ETASeconds, q.PreQueue))
	default:
		return renderBytes(templates.OOBAlert("You are no longer in line. Reload the page to join again."))
	}
}

func (htmlEncoder) Admitted(until time.Time) []byte {
	return renderBytes(templates.QueueAdmitted(until))
}

func (htmlEncoder) Error(code, message string) []byte {
	return renderBytes(templates.OOBAlert(message))
}

// Pong answers a ping with an empty fragment (the htmx page never pings).
func (htmlEncoder) Pong() []byte { return []byte("<template></template>") }
