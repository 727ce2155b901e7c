package booking

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// HeldSeats returns who holds each held seat of eventID: seat id → fan id,
// read from the hold keys with pipelined MGETs of at most statsBatch keys
// each (one round trip). It says nothing about sold seats (SoldSeats does):
// callers that show both let sold win. A hold that lapses or is taken while
// the keys are read may or may not be included. Unknown event → not_found;
// Redis failure → unavailable. Safe for concurrent use.
func (s *Service) HeldSeats(ctx context.Context, eventID string) (map[string]string, error) {
	cat, err := s.Catalog(ctx, eventID)
	if err != nil {
		return nil, err
	}
	type batch struct {
		seats []string
		cmd   *redis.SliceCmd
	}
	var batches []batch
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for start := 0; start < len(cat.Order); start += statsBatch {
			seats := cat.Order[start:min(start+statsBatch, len(cat.Order))]
			keys := make([]string, len(seats))
			for i, id := range seats {
				keys[i] = holdKey(eventID, id)
			}
			batches = append(batches, batch{seats, p.MGet(ctx, keys...)})
		}
		return nil
	})
	if err != nil {
		return nil, unavailable("redis: read holds", err)
	}
	held := make(map[string]string)
	for _, b := range batches {
		for i, v := range b.cmd.Val() {
			val, ok := v.(string)
			if !ok {
				continue
			}
			if fan, _, ok := holdOwner(val); ok {
				held[b.seats[i]] = fan
			}
		}
	}
	return held, nil
}
