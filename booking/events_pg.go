package booking

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateEvent stores a new event with all its sections and seats in one
// transaction, with a fresh secret seed for the pre-queue shuffle. It returns
// an event_exists error if the id is taken and bad_request if ne is invalid.
func (s *Service) CreateEvent(ctx context.Context, ne NewEvent) (Event, error) {
	if err := ne.Validate(); err != nil {
		return Event{}, err
	}
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return Event{}, fmt.Errorf("store: create event: seed: %w", err)
	}
	sum := sha256.Sum256(seed)
	hash := hex.EncodeToString(sum[:])
	sections := ne.Layout()
	total := 0
	err := inTx(ctx, s.db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO events (id, name, venue, starts_at, on_sale_at, shuffle_seed, shuffle_seed_sha256)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, ne.ID, ne.Name, ne.Venue, ne.StartsAt, ne.OnSaleAt, seed, hash)
		if isUniqueViolation(err, "events_pkey") {
			return Errorf(ECodeEventExists, "event %q already exists", ne.ID)
		}
		if err != nil {
			return fmt.Errorf("store: insert event: %w", err)
		}
		var rows [][]any
		for i, sec := range sections {
			if _, err := tx.Exec(ctx, `INSERT INTO sections (event_id, id, name, price_cents, position) VALUES ($1, $2, $3, $4, $5)`,
				ne.ID, sec.ID, sec.Name, sec.PriceCents, i); err != nil {
				return fmt.Errorf("store: insert section: %w", err)
			}
			for _, row := range sec.Rows {
				for n, seat := range row.Seats {
					rows = append(rows, []any{ne.ID, seat.ID, sec.ID, row.Label, n + 1, seat.Label, seat.X, seat.Y})
				}
			}
		}
		total = len(rows)
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"seats"},
			[]string{"event_id", "id", "section_id", "row_label", "number", "label", "x", "y"}, pgx.CopyFromRows(rows))
		if err != nil {
			return fmt.Errorf("store: insert seats: %w", err)
		}
		return nil
	})
	if err != nil {
		return Event{}, err
	}
	return Event{ID: ne.ID, Name: ne.Name, Venue: ne.Venue, StartsAt: ne.StartsAt.UTC(), OnSaleAt: ne.OnSaleAt.UTC(),
		ShuffleSeedSHA256: hash, SeatsTotal: total, SeatsAvailable: total, Sections: sections}, nil
}

// eventColumns reads an event with its seat counts in one pass over its
// seats (FROM events e, with the LATERAL join eventCounts).
const eventColumns = `e.id, e.name, e.venue, e.starts_at, e.on_sale_at, e.shuffle_seed_sha256, c.total, c.available`

const eventCounts = ` CROSS JOIN LATERAL (SELECT count(*) AS total, count(*) FILTER (WHERE s.status = 'available') AS available
	FROM seats s WHERE s.event_id = e.id) c`

func scanEvent(row pgx.Row) (Event, error) {
	var e Event
	err := row.Scan(&e.ID, &e.Name, &e.Venue, &e.StartsAt, &e.OnSaleAt, &e.ShuffleSeedSHA256, &e.SeatsTotal, &e.SeatsAvailable)
	e.StartsAt, e.OnSaleAt = e.StartsAt.UTC(), e.OnSaleAt.UTC()
	return e, err
}

// ListEvents returns every event, soonest first, with seat counts from SQL
// (sold seats are not available; held ones still are).
func (s *Service) ListEvents(ctx context.Context) ([]Event, error) {
	rows, err := s.db.Query(ctx, `SELECT `+eventColumns+` FROM events e`+eventCounts+` ORDER BY e.starts_at, e.id`)
	if err != nil {
		return nil, unavailable("store: list events", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("store: scan event: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("store: list events", err)
	}
	return out, nil
}

// Event returns one event without its seats, or not_found.
func (s *Service) Event(ctx context.Context, id string) (Event, error) {
	if !eventIDPattern.MatchString(id) {
		return Event{}, Errorf(ECodeNotFound, "no such event")
	}
	e, err := scanEvent(s.db.QueryRow(ctx, `SELECT `+eventColumns+` FROM events e`+eventCounts+` WHERE e.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Event{}, Errorf(ECodeNotFound, "no such event")
	}
	if err != nil {
		return Event{}, unavailable("store: get event", err)
	}
	return e, nil
}

// EventDetail returns an event with its sections, rows and seats, or not_found.
func (s *Service) EventDetail(ctx context.Context, id string) (Event, error) {
	e, err := s.Event(ctx, id)
	if err != nil {
		return Event{}, err
	}
	cat, err := s.Catalog(ctx, id)
	if err != nil {
		return Event{}, err
	}
	e.Sections = cat.Sections
	return e, nil
}

// ShuffleSeed returns the event's secret pre-queue seed. Callers reveal it
// only once the sale has opened.
func (s *Service) ShuffleSeed(ctx context.Context, eventID string) ([]byte, error) {
	var seed []byte
	err := s.db.QueryRow(ctx, `SELECT shuffle_seed FROM events WHERE id = $1`, eventID).Scan(&seed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, Errorf(ECodeNotFound, "no such event")
	}
	if err != nil {
		return nil, unavailable("store: get shuffle seed", err)
	}
	return seed, nil
}

// Catalog is the immutable layout of an event: its sections and every seat's
// section, price and the SQL version an available seat has. Seats only ever
// go from available to sold, so a cached version of an available seat stays
// right until it is sold — and a sold seat's new version makes the sale's
// version check refuse any hold that carried the old one.
type Catalog struct {
	EventID  string
	Sections []Section
	Seats    map[string]CatalogSeat
	Order    []string // seat ids in map order (section, row, number)
	loadedAt time.Time
}

// CatalogSeat is one seat's place in the catalog.
type CatalogSeat struct {
	SectionID  string
	Section    string
	Row        string
	Number     int
	Label      string
	PriceCents int64
	Version    int
}

// Catalog returns the event's seat catalog, loading it from SQL once and
// caching it for the life of the Service. It returns not_found for an
// unknown event.
func (s *Service) Catalog(ctx context.Context, eventID string) (*Catalog, error) {
	if c, ok := s.catalogs.Load(eventID); ok {
		return c.(*Catalog), nil
	}
	if !eventIDPattern.MatchString(eventID) {
		return nil, Errorf(ECodeNotFound, "no such event")
	}
	// One load per event however many requests miss at once: when a drop
	// opens, thousands of fans connect in the same second, and each
	// concurrent load of a 10,000-seat catalog was megabytes of garbage
	// (a heap profile of 10,000 idle fans: half the heap was catalog copies).
	v, err, _ := s.catalogLoads.Do(eventID, func() (any, error) {
		if c, ok := s.catalogs.Load(eventID); ok {
			return c, nil
		}
		// Detached from this caller: one fan giving up must not fail the
		// others waiting for the same load.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), catalogLoadTimeout)
		defer cancel()
		return s.loadCatalog(ctx, eventID)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Catalog), nil
}

// catalogLoadTimeout bounds one catalog load from SQL.
const catalogLoadTimeout = 10 * time.Second

// loadCatalog reads eventID's catalog from SQL and caches it.
func (s *Service) loadCatalog(ctx context.Context, eventID string) (*Catalog, error) {
	s.catalogReads.Add(1)
	c := &Catalog{EventID: eventID, Seats: map[string]CatalogSeat{}, loadedAt: s.now()}
	rows, err := s.db.Query(ctx, `SELECT s.id, s.name, s.price_cents, t.id, t.row_label, t.number, t.label, t.x, t.y, t.version
		FROM sections s JOIN seats t ON t.event_id = s.event_id AND t.section_id = s.id
		WHERE s.event_id = $1 ORDER BY s.position, t.y, t.x`, eventID)
	if err != nil {
		return nil, unavailable("store: load catalog", err)
	}
	defer rows.Close()
	for rows.Next() {
		var secID, secName, seatID, rowLabel, label string
		var price int64
		var number, x, y, version int
		if err := rows.Scan(&secID, &secName, &price, &seatID, &rowLabel, &number, &label, &x, &y, &version); err != nil {
			return nil, fmt.Errorf("store: scan catalog: %w", err)
		}
		if n := len(c.Sections); n == 0 || c.Sections[n-1].ID != secID {
			c.Sections = append(c.Sections, Section{ID: secID, Name: secName, PriceCents: price})
		}
		sec := &c.Sections[len(c.Sections)-1]
		rowID := secID + "-" + rowLabel
		if n := len(sec.Rows); n == 0 || sec.Rows[n-1].ID != rowID {
			sec.Rows = append(sec.Rows, Row{ID: rowID, Label: rowLabel})
		}
		row := &sec.Rows[len(sec.Rows)-1]
		row.Seats = append(row.Seats, Seat{ID: seatID, Label: label, X: x, Y: y})
		c.Seats[seatID] = CatalogSeat{SectionID: secID, Section: secName, Row: rowLabel, Number: number, Label: label, PriceCents: price, Version: version}
		c.Order = append(c.Order, seatID)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("store: load catalog", err)
	}
	if len(c.Sections) == 0 {
		return nil, Errorf(ECodeNotFound, "no such event")
	}
	actual, _ := s.catalogs.LoadOrStore(eventID, c)
	return actual.(*Catalog), nil
}
