package booking

import (
	"context"
	"regexp"
	"sort"
	"strconv"
	"time"
)

// HoldSet is the seats one fan holds in one event and when the first of
// those holds lapses (zero when the fan holds nothing).
type HoldSet struct {
	Seats     []string  `json:"seats"`
	ExpiresAt time.Time `json:"expires_at"`
}

// fanIDPattern is the shape of a fan (session) id. It excludes '|' (the hold
// value separator), braces (Redis hash tags) and whitespace.
var fanIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.:@+=/-]{1,128}$`)

// ValidFanID reports whether id can name a fan: 1 to 128 characters of
// [A-Za-z0-9_.:@+=/-].
func ValidFanID(id string) bool { return fanIDPattern.MatchString(id) }

// Hold holds seats of eventID for fanID, all or nothing, and returns every
// seat the fan now holds in the event.
//
// Rules, checked atomically in Redis by one script:
//   - 1 to MaxSeatsPerFan distinct seat ids (duplicates are ignored), each a
//     seat of the event, else invalid_seat naming the bad ones (bad_request
//     for an empty list, not_found for an unknown event);
//   - a seat this fan already holds is a success and its hold is NOT
//     extended;
//   - a seat that is sold, held by another fan, or in this fan's cool-down
//     makes the whole request fail with seat_unavailable listing exactly
//     those seats;
//   - live holds plus seats already bought plus new seats may not exceed
//     MaxSeatsPerFan, else seat_limit; being one script, parallel requests
//     of one fan cannot exceed it together.
//
// Cool-down (denial of inventory): when a fan's hold on a seat expires
// unpaid, that fan cannot hold the seat again for Config.HoldCooldown; other
// fans can. Each new hold also writes cool:{E}:{fan}:{seat} with a lifetime
// of HoldTTL + HoldCooldown (stretched with the hold when checkout extends
// it); the key is deleted when the fan releases the hold or buys the seat,
// so only a lapsed hold leaves it behind. A hold is refused while that key
// exists and the fan holds no live hold on the seat.
//
// Admission (DESIGN.md invariant 5): with adm set, the fan must be admitted
// to the event, else not_admitted; the script checks it with the hold, one
// Redis round trip for both. nil skips the check (tools and tests that
// hold on a fan's behalf).
//
// Redis failures return unavailable. Hold is safe for concurrent use.
func (s *Service) Hold(ctx context.Context, eventID, fanID string, seats []string, adm Admission) (HoldSet, error) {
	hs, err := s.hold(ctx, eventID, fanID, seats, adm)
	if f := s.hook().HoldDone; f != nil {
		outcome := "ok"
		if err != nil {
			outcome = ErrorCode(err)
		}
		f(outcome)
	}
	return hs, err
}

func (s *Service) hold(ctx context.Context, eventID, fanID string, seats []string, adm Admission) (HoldSet, error) {
	if !ValidFanID(fanID) {
		return HoldSet{}, Errorf(ECodeBadRequest, "invalid fan id")
	}
	cat, err := s.Catalog(ctx, eventID)
	if err != nil {
		return HoldSet{}, err
	}
	want, err := s.validateSeats(cat, seats)
	if err != nil {
		// A fan who was not admitted hears that first, whatever they asked.
		if adm != nil {
			if _, aerr := adm.Admitted(ctx, eventID, fanID); aerr != nil {
				return HoldSet{}, aerr
			}
		}
		return HoldSet{}, err
	}
	versions := make([]int, len(want))
	for i, id := range want {
		versions[i] = cat.Seats[id].Version
	}
	res, err := s.holdRedis(ctx, eventID, fanID, want, versions, adm)
	if err != nil {
		return HoldSet{}, err
	}
	switch {
	case res.notAdmitted:
		return HoldSet{}, NotAdmitted()
	case len(res.taken) > 0:
		return HoldSet{}, &Error{Code: ECodeSeatUnavailable, Message: "some seats are held by someone else or sold", Seats: cat.sortSeats(res.taken)}
	case res.limit:
		return HoldSet{}, Errorf(ECodeSeatLimit, "at most %d seats per fan: you hold %d and bought %d, and asked for %d more",
			s.cfg.MaxSeatsPerFan, res.held, res.bought, res.asked)
	}
	return s.holdSet(cat, res.holds), nil
}

// validateSeats deduplicates seats and checks their number and that each is
// a seat of the catalog; it returns them in catalog order.
func (s *Service) validateSeats(cat *Catalog, seats []string) ([]string, error) {
	if len(seats) == 0 {
		return nil, Errorf(ECodeBadRequest, "name at least one seat")
	}
	seen := make(map[string]bool, len(seats))
	var bad, want []string
	for _, id := range seats {
		if seen[id] {
			continue
		}
		seen[id] = true
		if _, ok := cat.Seats[id]; !ok || !ValidSeatID(id) {
			bad = append(bad, id)
			continue
		}
		want = append(want, id)
	}
	if len(bad) > 0 {
		return nil, &Error{Code: ECodeInvalidSeat, Message: "these seats are not seats of this event", Seats: bad}
	}
	if len(want) > s.cfg.MaxSeatsPerFan {
		return nil, Errorf(ECodeSeatLimit, "at most %d seats per fan", s.cfg.MaxSeatsPerFan)
	}
	return cat.sortSeats(want), nil
}

// Holds returns the seats fanID holds live in eventID. Unknown event →
// not_found; Redis failure → unavailable.
func (s *Service) Holds(ctx context.Context, eventID, fanID string) (HoldSet, error) {
	if !ValidFanID(fanID) {
		return HoldSet{}, Errorf(ECodeBadRequest, "invalid fan id")
	}
	cat, err := s.Catalog(ctx, eventID)
	if err != nil {
		return HoldSet{}, err
	}
	holds, err := s.holdsRedis(ctx, eventID, fanID)
	if err != nil {
		return HoldSet{}, err
	}
	return s.holdSet(cat, holds), nil
}

// Release drops fanID's hold on seat. Only the holder may release: a seat
// not held by this fan (free, sold, someone else's, expired) is not_found.
// Releasing starts no cool-down.
func (s *Service) Release(ctx context.Context, eventID, fanID, seat string) error {
	if !ValidFanID(fanID) {
		return Errorf(ECodeBadRequest, "invalid fan id")
	}
	cat, err := s.Catalog(ctx, eventID)
	if err != nil {
		return err
	}
	if _, ok := cat.Seats[seat]; !ok {
		return Errorf(ECodeNotFound, "no such seat")
	}
	released, err := s.releaseRedis(ctx, eventID, fanID, seat)
	if err != nil {
		return err
	}
	if !released {
		return Errorf(ECodeNotFound, "you do not hold this seat")
	}
	return nil
}

// holdSet turns seat → remaining lifetime into a HoldSet.
func (s *Service) holdSet(cat *Catalog, holds map[string]time.Duration) HoldSet {
	hs := HoldSet{Seats: make([]string, 0, len(holds))}
	var least time.Duration = -1
	for seat, left := range holds {
		hs.Seats = append(hs.Seats, seat)
		if least < 0 || left < least {
			least = left
		}
	}
	hs.Seats = cat.sortSeats(hs.Seats)
	if least >= 0 {
		hs.ExpiresAt = s.now().Add(least).UTC()
	}
	return hs
}

// sortSeats sorts seat ids in map order (section, row, number); ids not in
// the catalog go last, alphabetically. It sorts in place and returns seats.
func (c *Catalog) sortSeats(seats []string) []string {
	pos := func(id string) (int, bool) {
		cs, ok := c.Seats[id]
		if !ok {
			return 0, false
		}
		sec := 0
		for i := range c.Sections {
			if c.Sections[i].ID == cs.SectionID {
				sec = i
				break
			}
		}
		row, _ := strconv.Atoi(cs.Row)
		return sec*1_000_000 + row*1000 + cs.Number, true
	}
	sort.SliceStable(seats, func(i, j int) bool {
		pi, oki := pos(seats[i])
		pj, okj := pos(seats[j])
		switch {
		case oki && okj:
			return pi < pj
		case oki != okj:
			return oki
		}
		return seats[i] < seats[j]
	})
	return seats
}
