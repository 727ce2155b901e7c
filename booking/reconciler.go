package booking

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ReconcileReport counts the repairs one Reconcile made to Redis.
type ReconcileReport struct {
	EventID          string
	SoldAdded        int // seats sold in SQL missing from sold:{E}
	SoldRemoved      int // seats in sold:{E} not sold in SQL
	FanBoughtAdded   int // bought seats missing from fanbought:{E}:{fan}
	FanBoughtRemoved int // seats in a buyer's fanbought set that SQL does not give them
	HoldsDeleted     int // holds on sold seats

	// Finishing counts the entries added to sold:{E} and bought sets ahead
	// of sales still finishing: the sale has committed and its checkout is
	// still capturing the payment before it records the sale in Redis
	// (state committed). That is a sale in flight, not a repair; under a
	// drop's load the gap lasts seconds. Fixed leaves it out. The buyer's
	// holds on those seats are left to the sale.
	Finishing int
}

// Fixed is the total number of repairs.
func (r ReconcileReport) Fixed() int {
	return r.SoldAdded + r.SoldRemoved + r.FanBoughtAdded + r.FanBoughtRemoved + r.HoldsDeleted
}

// Reconcile repairs eventID's Redis state from Postgres, the source of
// truth: sold:{E} becomes exactly the seats sold in SQL, each buyer's
// fanbought:{E}:{fan} exactly the seats of their confirmed orders, and holds
// on sold seats are deleted. Redis is read before SQL, so a sale committing
// meanwhile is never removed (seats only go from available to sold); a
// sale whose checkout has not yet recorded it in Redis is written ahead and
// counted as Finishing, not as a repair.
// Unknown event → not_found.
func (s *Service) Reconcile(ctx context.Context, eventID string) (ReconcileReport, error) {
	rep := ReconcileReport{EventID: eventID}
	cat, err := s.Catalog(ctx, eventID)
	if err != nil {
		return rep, err
	}
	inRedis, err := s.rdb.SMembers(ctx, soldKey(eventID)).Result()
	if err != nil {
		return rep, unavailable("redis: read sold set", err)
	}
	rows, err := s.db.Query(ctx, `SELECT s.id, o.session_id, coalesce(c.state = 'committed', false) FROM seats s
		JOIN orders o ON o.event_id = s.event_id AND o.id = s.order_id
		LEFT JOIN checkouts c ON c.event_id = o.event_id AND c.session_id = o.session_id AND c.idem_key = o.checkout_key
		WHERE s.event_id = $1 AND s.status = 'sold'`, eventID)
	if err != nil {
		return rep, unavailable("store: read sold seats", err)
	}
	sold := map[string]bool{}
	finishing := map[string]bool{}
	byFan := map[string][]string{}
	for rows.Next() {
		var seat, fan string
		var inFlight bool
		if err := rows.Scan(&seat, &fan, &inFlight); err != nil {
			rows.Close()
			return rep, fmt.Errorf("store: scan sold seat: %w", err)
		}
		sold[seat] = true
		if inFlight {
			finishing[seat] = true
		}
		byFan[fan] = append(byFan[fan], seat)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, unavailable("store: read sold seats", err)
	}

	var add, remove []any
	have := map[string]bool{}
	for _, seat := range inRedis {
		have[seat] = true
		if !sold[seat] {
			remove = append(remove, seat)
		}
	}
	for seat := range sold {
		if !have[seat] {
			add = append(add, seat)
		}
	}

	// Every buyer's bought set, in one round trip.
	fans := make([]string, 0, len(byFan))
	for fan := range byFan {
		fans = append(fans, fan)
	}
	bought := make([]*redis.StringSliceCmd, len(fans))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, fan := range fans {
			bought[i] = p.SMembers(ctx, fanBoughtKey(eventID, fan))
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return rep, unavailable("redis: read bought sets", err)
	}

	// Per buyer: what to add and what to remove. A removal candidate is
	// re-checked in SQL, since a sale may have committed (and reached
	// Redis) after the read above.
	type fix struct {
		fan       string
		add, drop []any
	}
	fixes := make([]fix, len(fans))
	var recheck []string
	for i, fan := range fans {
		fixes[i].fan = fan
		want := map[string]bool{}
		for _, seat := range byFan[fan] {
			want[seat] = true
		}
		got := map[string]bool{}
		for _, seat := range bought[i].Val() {
			got[seat] = true
			if !want[seat] {
				fixes[i].drop = append(fixes[i].drop, seat)
				recheck = append(recheck, seat)
			}
		}
		for seat := range want {
			if !got[seat] {
				fixes[i].add = append(fixes[i].add, seat)
			}
		}
	}
	if len(recheck) > 0 {
		owner := map[string]string{}
		rows, err := s.db.Query(ctx, `SELECT s.id, o.session_id FROM seats s
			JOIN orders o ON o.event_id = s.event_id AND o.id = s.order_id
			WHERE s.event_id = $1 AND s.status = 'sold' AND s.id = ANY($2)`, eventID, recheck)
		if err != nil {
			return rep, unavailable("store: recheck sold seats", err)
		}
		for rows.Next() {
			var seat, fan string
			if err := rows.Scan(&seat, &fan); err != nil {
				rows.Close()
				return rep, fmt.Errorf("store: scan sold seat: %w", err)
			}
			owner[seat] = fan
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return rep, unavailable("store: recheck sold seats", err)
		}
		for i := range fixes {
			kept := fixes[i].drop[:0]
			for _, seat := range fixes[i].drop {
				if owner[seat.(string)] != fixes[i].fan {
					kept = append(kept, seat)
				}
			}
			fixes[i].drop = kept
		}
	}

	// Holds on sold seats, deleted in one round trip. Those on seats whose
	// sale is finishing are the buyer's own, and go with the sale
	// (soldScript).
	settled := make([]string, 0, len(sold))
	for _, seat := range cat.Order {
		if sold[seat] && !finishing[seat] {
			settled = append(settled, seat)
		}
	}

	var dels []*redis.IntCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if len(add) > 0 {
			p.SAdd(ctx, soldKey(eventID), add...)
		}
		if len(remove) > 0 {
			p.SRem(ctx, soldKey(eventID), remove...)
		}
		for _, f := range fixes {
			if len(f.add) > 0 {
				p.SAdd(ctx, fanBoughtKey(eventID, f.fan), f.add...)
			}
			if len(f.drop) > 0 {
				p.SRem(ctx, fanBoughtKey(eventID, f.fan), f.drop...)
			}
		}
		for start := 0; start < len(settled); start += 1000 {
			end := min(start+1000, len(settled))
			keys := make([]string, 0, end-start)
			for _, seat := range settled[start:end] {
				keys = append(keys, holdKey(eventID, seat))
			}
			dels = append(dels, p.Del(ctx, keys...))
		}
		return nil
	})
	if err != nil {
		return ReconcileReport{EventID: eventID}, unavailable("redis: repair event state", err)
	}
	// An entry written for a seat whose sale is finishing is not a repair.
	count := func(repaired *int, seat any) {
		if finishing[seat.(string)] {
			rep.Finishing++
		} else {
			*repaired++
		}
	}
	for _, seat := range add {
		count(&rep.SoldAdded, seat)
	}
	rep.SoldRemoved = len(remove)
	for _, f := range fixes {
		for _, seat := range f.add {
			count(&rep.FanBoughtAdded, seat)
		}
		rep.FanBoughtRemoved += len(f.drop)
	}
	for _, d := range dels {
		rep.HoldsDeleted += int(d.Val())
	}
	if f := s.hook().Reconciled; f != nil {
		for kind, n := range map[string]int{"sold_added": rep.SoldAdded, "sold_removed": rep.SoldRemoved,
			"fanbought_added": rep.FanBoughtAdded, "fanbought_removed": rep.FanBoughtRemoved, "holds_deleted": rep.HoldsDeleted} {
			if n > 0 {
				f(kind, n)
			}
		}
	}
	return rep, nil
}

// RunReconciler reconciles every event at once and then every `every` until
// ctx ends, logging repairs and errors.
func (s *Service) RunReconciler(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.reconcileAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) reconcileAll(ctx context.Context) {
	rows, err := s.db.Query(ctx, `SELECT id FROM events ORDER BY id`)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("reconciler: list events", "err", err)
		}
		return
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err == nil {
			ids = append(ids, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		s.log.Error("reconciler: list events", "err", err)
		return
	}
	for _, id := range ids {
		rep, err := s.Reconcile(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("reconciler", "event", id, "err", err)
			continue
		}
		if rep.Fixed() > 0 {
			s.log.Warn("reconciler repaired Redis", "event", id, "sold_added", rep.SoldAdded, "sold_removed", rep.SoldRemoved,
				"fanbought_added", rep.FanBoughtAdded, "fanbought_removed", rep.FanBoughtRemoved, "holds_deleted", rep.HoldsDeleted)
		}
	}
}
