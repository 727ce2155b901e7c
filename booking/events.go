package booking

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Event is a sale of a venue's seats.
type Event struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Venue    string    `json:"venue"`
	StartsAt time.Time `json:"starts_at"`
	OnSaleAt time.Time `json:"on_sale_at"`
	// ShuffleSeedSHA256 is the published hash of the pre-queue shuffle seed.
	ShuffleSeedSHA256 string `json:"shuffle_seed_sha256"`
	SeatsTotal        int    `json:"seats_total"`
	SeatsAvailable    int    `json:"seats_available"`
	// Sections is filled by EventDetail only.
	Sections []Section `json:"sections,omitempty"`
}

// Section is a priced block of rows.
type Section struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Rows       []Row  `json:"rows"`
}

// Row is one row of a section.
type Row struct {
	ID    string `json:"id"`
	Label string `json:"label"`
	Seats []Seat `json:"seats"`
}

// Seat is one place, positioned on the map by X and Y (grid units).
type Seat struct {
	ID    string `json:"id"`
	Label string `json:"label"`
	X     int    `json:"x"`
	Y     int    `json:"y"`
}

// NewEvent is what it takes to create an event (API: POST /api/staff/events,
// `seatmap seed`).
type NewEvent struct {
	ID       string       `json:"id"`
	Name     string       `json:"name"`
	Venue    string       `json:"venue"`
	StartsAt time.Time    `json:"starts_at"`
	OnSaleAt time.Time    `json:"on_sale_at"`
	Sections []NewSection `json:"sections"`
}

// NewSection describes a block of Rows × SeatsPerRow seats at one price.
type NewSection struct {
	Name        string `json:"name"`
	PriceCents  int64  `json:"price_cents"`
	Rows        int    `json:"rows"`
	SeatsPerRow int    `json:"seats_per_row"`
}

// Limits of one event, so one request cannot create millions of rows.
const (
	MaxSections     = 26
	MaxRows         = 200
	MaxSeatsPerRow  = 200
	MaxSeatsInEvent = 100_000
)

var (
	eventIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	seatIDPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
)

// ValidSeatID reports whether id has the shape of a seat id
// ([A-Za-z0-9_-]{1,32}); it says nothing about whether the seat exists.
func ValidSeatID(id string) bool { return seatIDPattern.MatchString(id) }

// ValidEventID reports whether id has the shape of an event id.
func ValidEventID(id string) bool { return eventIDPattern.MatchString(id) }

// Validate checks a NewEvent and returns a bad_request error naming the first
// problem.
func (e NewEvent) Validate() error {
	bad := func(format string, args ...any) error { return Errorf(ECodeBadRequest, format, args...) }
	switch {
	case !eventIDPattern.MatchString(e.ID):
		return bad("id must match [A-Za-z0-9_-]{1,64}")
	case strings.TrimSpace(e.Name) == "" || len(e.Name) > 200:
		return bad("name must be 1 to 200 characters")
	case len(e.Venue) > 200:
		return bad("venue must be at most 200 characters")
	case e.StartsAt.IsZero():
		return bad("starts_at is required (RFC 3339)")
	case e.OnSaleAt.IsZero():
		return bad("on_sale_at is required (RFC 3339)")
	case len(e.Sections) == 0 || len(e.Sections) > MaxSections:
		return bad("an event needs 1 to %d sections", MaxSections)
	}
	total := 0
	for i, s := range e.Sections {
		switch {
		case strings.TrimSpace(s.Name) == "" || len(s.Name) > 100:
			return bad("section %d: name must be 1 to 100 characters", i+1)
		case s.PriceCents < 0 || s.PriceCents > 100_000_000:
			return bad("section %d: price_cents must be between 0 and 100000000", i+1)
		case s.Rows < 1 || s.Rows > MaxRows:
			return bad("section %d: rows must be between 1 and %d", i+1, MaxRows)
		case s.SeatsPerRow < 1 || s.SeatsPerRow > MaxSeatsPerRow:
			return bad("section %d: seats_per_row must be between 1 and %d", i+1, MaxSeatsPerRow)
		}
		total += s.Rows * s.SeatsPerRow
	}
	if total > MaxSeatsInEvent {
		return bad("an event may have at most %d seats", MaxSeatsInEvent)
	}
	return nil
}

// sectionLetter is the id of the i-th section: A, B, C, ...
func sectionLetter(i int) string { return string(rune('A' + i)) }

// Layout expands the sections into the seats they describe. Seat ids are
// section letter, row and number ("A-3-12"); sections sit side by side on the
// map with a two-seat aisle between them.
func (e NewEvent) Layout() []Section {
	out := make([]Section, 0, len(e.Sections))
	x0 := 0
	for i, ns := range e.Sections {
		sec := Section{ID: sectionLetter(i), Name: ns.Name, PriceCents: ns.PriceCents}
		for r := 1; r <= ns.Rows; r++ {
			row := Row{ID: fmt.Sprintf("%s-%d", sec.ID, r), Label: strconv.Itoa(r)}
			for n := 1; n <= ns.SeatsPerRow; n++ {
				row.Seats = append(row.Seats, Seat{
					ID:    fmt.Sprintf("%s-%d-%d", sec.ID, r, n),
					Label: fmt.Sprintf("%s row %d seat %d", ns.Name, r, n),
					X:     x0 + n - 1,
					Y:     r - 1,
				})
			}
			sec.Rows = append(sec.Rows, row)
		}
		out = append(out, sec)
		x0 += ns.SeatsPerRow + 2
	}
	return out
}
