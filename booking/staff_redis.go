package booking

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// forceReleaseScript deletes a seat's hold whoever holds it and drops the
// seat from the holder's set. The holder's cool-down key stays, so a stuck
// client (or a bot) cannot grab the seat straight back; other fans can.
// KEYS: hold key. ARGV: fanholds key prefix ("fanholds:{E}:"), seat.
// Returns the holder's fan id, or false when the seat is not held.
var forceReleaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  return false
end
local fan = string.match(v, '^(.*)|[^|]*$') or v
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[1] .. fan, ARGV[2])
return fan
`)

// ForceRelease deletes the hold on seat of eventID whoever holds it — the
// staff remedy for a stuck hold — and returns the fan who held it. The
// deletion's keyspace notification frees the seat on every fan's map. A
// checkout that had already claimed the hold can still complete: Postgres,
// not the hold, decides a sale. Errors: not_found for an unknown event, a
// seat not in it, or a seat not held; unavailable when Redis fails. Safe for
// concurrent use.
func (s *Service) ForceRelease(ctx context.Context, eventID, seat string) (fan string, err error) {
	cat, err := s.Catalog(ctx, eventID)
	if err != nil {
		return "", err
	}
	if _, ok := cat.Seats[seat]; !ok {
		return "", Errorf(ECodeNotFound, "%s is not a seat of this event", seat)
	}
	fan, err = forceReleaseScript.Run(ctx, s.scripts, []string{holdKey(eventID, seat)}, fanHoldsKey(eventID, ""), seat).Text()
	if errors.Is(err, redis.Nil) {
		return "", Errorf(ECodeNotFound, "seat %s is not held", seat)
	}
	if err != nil {
		return "", unavailable("redis: force release hold", err)
	}
	return fan, nil
}

// heldBySection counts live holds on the catalog's unsold seats per section
// id, with one pipelined round trip of EXISTS over at most statsBatch keys
// of one section each.
func (s *Service) heldBySection(ctx context.Context, cat *Catalog, sold map[string]bool) (map[string]int, error) {
	type batch struct {
		section string
		cmd     *redis.IntCmd
	}
	var batches []batch
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		keys := make([]string, 0, statsBatch)
		section := ""
		flush := func() {
			if len(keys) > 0 {
				batches = append(batches, batch{section, p.Exists(ctx, keys...)})
				keys = make([]string, 0, statsBatch)
			}
		}
		for _, id := range cat.Order {
			if sold[id] {
				continue
			}
			if sec := cat.Seats[id].SectionID; sec != section {
				flush()
				section = sec
			}
			keys = append(keys, holdKey(cat.EventID, id))
			if len(keys) == statsBatch {
				flush()
			}
		}
		flush()
		return nil
	})
	if err != nil {
		return nil, unavailable("redis: count holds per section", err)
	}
	held := make(map[string]int, len(cat.Sections))
	for _, b := range batches {
		held[b.section] += int(b.cmd.Val())
	}
	return held, nil
}
