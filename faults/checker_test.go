//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// report is a scenario's figures and the checker's verdict; it is logged
// and, with FAULTS_REPORT=path, appended to that file as one JSON line
// (docs/RELIABILITY.md quotes the last run).
type report struct {
	Scenario   string         `json:"scenario"`
	Long       bool           `json:"long"`
	Seconds    float64        `json:"seconds"`
	Ops        int            `json:"ops"`
	Counts     map[string]int `json:"counts"`
	Faults     []string       `json:"faults"`
	Resolved   int            `json:"unknown_keys_resolved"`
	Orders     int            `json:"orders"`
	SeatsSold  int            `json:"seats_sold"`
	Payments   map[string]int `json:"payments"`
	Maps       int            `json:"maps_checked"`
	Figures    map[string]any `json:"figures,omitempty"`
	Notes      []string       `json:"notes,omitempty"`
	Violations []string       `json:"violations"`

	mu sync.Mutex
}

func newReport(name string) *report {
	return &report{Scenario: name, Long: long(), Figures: map[string]any{}, Violations: []string{}}
}

func (r *report) violation(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

func (r *report) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *report) figure(name string, v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Figures[name] = v
}

// finish logs the report, writes the history and the JSON line, and fails
// t for every violation.
func (r *report) finish(t *testing.T, c *cluster, h *history, start time.Time) {
	r.Seconds = time.Since(start).Round(100 * time.Millisecond).Seconds()
	if h != nil {
		r.Ops = h.len()
		r.Counts = h.counts()
		if p := h.write(t.Name()); p != "" {
			t.Logf("history: %s", p)
		}
	}
	if c != nil {
		c.mu.Lock()
		for _, f := range c.faults {
			r.Faults = append(r.Faults, f.What)
		}
		c.mu.Unlock()
	}
	b, _ := json.Marshal(r)
	t.Logf("REPORT %s", b)
	t.Logf("SUMMARY %s: %d ops (%s), %d faults, %d unknown keys resolved, %d orders, %d seats sold, payments %v, %d maps checked, %d violations, %.0fs",
		r.Scenario, r.Ops, describeCounts(r.Counts), len(r.Faults), r.Resolved, r.Orders, r.SeatsSold, r.Payments, r.Maps, len(r.Violations), r.Seconds)
	for _, n := range r.Notes {
		t.Logf("NOTE %s", n)
	}
	if path := os.Getenv("FAULTS_REPORT"); path != "" {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			f.Write(append(b, '\n'))
			f.Close()
		}
	}
	for _, v := range r.Violations {
		t.Errorf("INVARIANT VIOLATED: %s", v)
	}
}

// checkOptions selects the map checks.
type checkOptions struct {
	liveMaps  bool // the fans' still-open sockets must converge to the truth
	snapshots bool // every admitted fan's fresh socket snapshot must equal the truth
	held      bool // maps must also show exactly the holds Redis has (quiet scenarios)
}

// check verifies every invariant against Postgres, the sandbox's table,
// Redis and the fans' maps. Call it after settle and resolve.
func (c *cluster) check(ctx context.Context, r *report, h *history, evs []*event, fans []*fan, opt checkOptions) {
	c.checkSales(ctx, r, evs)
	c.checkKeys(ctx, r, h)
	c.checkPayments(ctx, r)
	c.checkFans(ctx, r, h, fans)
	c.checkOrderAPI(ctx, r, h, fans)
	if opt.liveMaps || opt.snapshots {
		for _, ev := range evs {
			c.checkMaps(ctx, r, ev, fans, opt)
		}
	}
}

// query runs fn, retrying for a while if Postgres is unreachable.
func (c *cluster) query(ctx context.Context, r *report, what string, fn func(ctx context.Context) error) bool {
	var err error
	for try := 0; try < 20; try++ {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = fn(qctx)
		cancel()
		if err == nil {
			return true
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
	r.violation("checker could not read %s: %v", what, err)
	return false
}

// strings1 runs a query returning one text column.
func (c *cluster) strings1(ctx context.Context, r *report, what, sql string, args ...any) []string {
	var out []string
	c.query(ctx, r, what, func(ctx context.Context) error {
		out = out[:0]
		rows, err := c.db.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return err
			}
			out = append(out, s)
		}
		return rows.Err()
	})
	return out
}

// checkSales: no seat in two orders; seats, orders and items agree.
func (c *cluster) checkSales(ctx context.Context, r *report, evs []*event) {
	for _, s := range c.strings1(ctx, r, "double sales", `SELECT event_id || '/' || seat_id || ' in ' || count(*) || ' orders'
		FROM order_items GROUP BY event_id, seat_id HAVING count(*) > 1`) {
		r.violation("seat sold twice: %s", s)
	}
	for _, s := range c.strings1(ctx, r, "seat/order agreement", `SELECT s.event_id || '/' || s.id || ' status=' || s.status
			|| ' seat.order=' || coalesce(s.order_id::text, '-') || ' item.order=' || coalesce(i.order_id::text, '-')
		FROM seats s LEFT JOIN order_items i ON i.event_id = s.event_id AND i.seat_id = s.id
		WHERE (s.status = 'sold') <> (i.order_id IS NOT NULL) OR s.order_id IS DISTINCT FROM i.order_id`) {
		r.violation("seat and order items disagree: %s", s)
	}
	for _, s := range c.strings1(ctx, r, "orders without items", `SELECT o.id::text FROM orders o
		WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.event_id = o.event_id AND i.order_id = o.id)`) {
		r.violation("order %s has no seats", s)
	}
	for _, s := range c.strings1(ctx, r, "order totals", `SELECT o.id::text || ' total=' || o.total_cents || ' items=' || sum(i.price_cents)
		FROM orders o JOIN order_items i ON i.event_id = o.event_id AND i.order_id = o.id
		GROUP BY o.id, o.total_cents HAVING sum(i.price_cents) <> o.total_cents`) {
		r.violation("order total differs from its seats' prices: %s", s)
	}
	for _, s := range c.strings1(ctx, r, "unfinished checkouts", `SELECT id::text || ' ' || state FROM checkouts
		WHERE state NOT IN ('completed', 'failed')`) {
		r.violation("checkout left unfinished after recovery: %s", s)
	}
	for _, s := range c.strings1(ctx, r, "unsent outbox", `SELECT id::text FROM outbox WHERE sent_at IS NULL`) {
		r.violation("outbox row %s never relayed", s)
	}
	var orders, sold int
	c.query(ctx, r, "counts", func(ctx context.Context) error {
		if err := c.db.QueryRow(ctx, `SELECT count(*) FROM orders WHERE status = 'confirmed'`).Scan(&orders); err != nil {
			return err
		}
		return c.db.QueryRow(ctx, `SELECT count(*) FROM seats WHERE status = 'sold'`).Scan(&sold)
	})
	r.Orders, r.SeatsSold = orders, sold
}

// sqlOrder is an order as Postgres has it.
type sqlOrder struct {
	ID, Status, Session, Key string
	Total                    int64
	Seats                    []string
}

func (c *cluster) orders(ctx context.Context, r *report) map[string]*sqlOrder {
	out := map[string]*sqlOrder{}
	c.query(ctx, r, "orders", func(ctx context.Context) error {
		clear(out)
		rows, err := c.db.Query(ctx, `SELECT o.id::text, o.status, o.session_id, o.checkout_key, o.total_cents,
			array(SELECT i.seat_id FROM order_items i WHERE i.event_id = o.event_id AND i.order_id = o.id ORDER BY i.seat_id)
			FROM orders o`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var o sqlOrder
			if err := rows.Scan(&o.ID, &o.Status, &o.Session, &o.Key, &o.Total, &o.Seats); err != nil {
				return err
			}
			out[o.ID] = &o
		}
		return rows.Err()
	})
	return out
}

// checkKeys: every ok answer is a confirmed order with exactly its seats;
// one key, one outcome; a key answered with a final failure has no order;
// every order was answered ok to its fan (after the resolution pass); no
// key stays indeterminate.
func (c *cluster) checkKeys(ctx context.Context, r *report, h *history) {
	orders := c.orders(ctx, r)
	byKey := map[string]*sqlOrder{}
	for _, o := range orders {
		if prev := byKey[o.Key]; prev != nil {
			r.violation("two orders for one Idempotency-Key %s: %s and %s", o.Key, prev.ID, o.ID)
		}
		byKey[o.Key] = o
	}
	keys := h.keys()
	for _, k := range keys {
		if len(k.OrderIDs) > 1 {
			r.violation("key %s answered with %d different orders %v", k.Key, len(k.OrderIDs), sortedKeys(k.OrderIDs))
		}
		if len(k.OrderIDs) > 0 && len(k.Consumed) > 0 {
			r.violation("key %s answered both ok and %v", k.Key, k.Consumed)
		}
		for _, o := range k.Ops {
			if o.Outcome != outcomeOK {
				continue
			}
			so := orders[o.OrderID]
			switch {
			case so == nil:
				r.violation("checkout %s (key %s) answered ok with order %s, which does not exist", o.Server, k.Key, o.OrderID)
				continue
			case so.Status != "confirmed":
				r.violation("order %s answered ok is %s", so.ID, so.Status)
			case so.Key != k.Key:
				r.violation("order %s answered for key %s belongs to key %s", so.ID, k.Key, so.Key)
			}
			got := slices.Sorted(slices.Values(o.Seats))
			if !slices.Equal(got, so.Seats) {
				r.violation("order %s answered with seats %v but holds %v", so.ID, got, so.Seats)
			}
			if o.Total != so.Total {
				r.violation("order %s answered with total %d but is %d", so.ID, o.Total, so.Total)
			}
		}
		if len(k.OrderIDs) == 0 && len(k.Consumed) > 0 {
			if so := byKey[k.Key]; so != nil {
				r.violation("key %s answered %v but order %s exists", k.Key, k.Consumed, so.ID)
			}
		}
		if len(k.OrderIDs) == 0 && len(k.Consumed) == 0 && k.lastDefinite() == "" {
			r.violation("key %s of fan %d is still indeterminate after %d attempts (last %s)", k.Key, k.Fan, len(k.Ops), k.Ops[len(k.Ops)-1].Code)
		}
		if k.lastDefinite() != "" && byKey[k.Key] != nil {
			r.violation("key %s replays unavailable but order %s exists", k.Key, byKey[k.Key].ID)
		}
	}
	for _, o := range orders {
		k := keys[o.Key]
		if k == nil || !k.OrderIDs[o.ID] {
			r.violation("order %s (key %s) exists but its fan was never told (lost answer not recoverable by key)", o.ID, o.Key)
		}
	}
}

// checkPayments: captures = confirmed orders (count, amounts, one to one);
// nothing left authorized; every other charge voided, declined or
// refunded; at most one standing charge per checkout key.
func (c *cluster) checkPayments(ctx context.Context, r *report) {
	r.Payments = map[string]int{}
	c.query(ctx, r, "payments", func(ctx context.Context) error {
		clear(r.Payments)
		rows, err := c.db.Query(ctx, `SELECT status, count(*) FROM sandbox_payments GROUP BY status`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var st string
			var n int
			if err := rows.Scan(&st, &n); err != nil {
				return err
			}
			r.Payments[st] = n
		}
		return rows.Err()
	})
	var capN, ordN int
	var capSum, ordSum int64
	c.query(ctx, r, "payment totals", func(ctx context.Context) error {
		if err := c.db.QueryRow(ctx, `SELECT count(*), coalesce(sum(amount_cents), 0) FROM sandbox_payments WHERE status = 'captured'`).Scan(&capN, &capSum); err != nil {
			return err
		}
		return c.db.QueryRow(ctx, `SELECT count(*), coalesce(sum(total_cents), 0) FROM orders WHERE status = 'confirmed'`).Scan(&ordN, &ordSum)
	})
	if capN != ordN || capSum != ordSum {
		r.violation("captured payments (%d, %d cents) ≠ confirmed orders (%d, %d cents)", capN, capSum, ordN, ordSum)
	}
	if n := r.Payments["authorized"]; n > 0 {
		r.violation("%d payments left authorized after recovery settled", n)
	}
	for _, s := range c.strings1(ctx, r, "orders without capture", `SELECT o.id::text || ' payment=' || coalesce(p.id, '-') || '/' || coalesce(p.status, '-')
		FROM orders o
		LEFT JOIN checkouts c ON c.event_id = o.event_id AND c.order_id = o.id
		LEFT JOIN sandbox_payments p ON p.idempotency_key = 'checkout:' || c.id::text
		WHERE o.status = 'confirmed' AND (p.status IS DISTINCT FROM 'captured' OR p.amount_cents <> o.total_cents)`) {
		r.violation("confirmed order without its captured payment: %s", s)
	}
	for _, s := range c.strings1(ctx, r, "captures without order", `SELECT p.id || ' ' || p.status || ' checkout=' || coalesce(c.state, 'none')
		FROM sandbox_payments p
		LEFT JOIN checkouts c ON 'checkout:' || c.id::text = p.idempotency_key
		LEFT JOIN orders o ON o.event_id = c.event_id AND o.id = c.order_id
		WHERE p.status IN ('captured', 'authorized') AND (o.id IS NULL OR o.status <> 'confirmed')`) {
		r.violation("charge standing without an order: %s", s)
	}
	for _, s := range c.strings1(ctx, r, "charges per key", `SELECT c.session_id || '/' || c.idem_key || ' ' || count(*)
		FROM sandbox_payments p JOIN checkouts c ON 'checkout:' || c.id::text = p.idempotency_key
		WHERE p.status IN ('captured', 'authorized')
		GROUP BY c.event_id, c.session_id, c.idem_key HAVING count(*) > 1`) {
		r.violation("more than one standing charge for one key: %s", s)
	}
}

// checkFans: a fan only ever bought seats it had asked to hold; the
// per-fan limit (a fairness policy kept in Redis) is reported, not failed.
func (c *cluster) checkFans(ctx context.Context, r *report, h *history, fans []*fan) {
	bySession := map[string]*fan{}
	several := 0
	for _, f := range fans {
		sids := f.sessionList()
		for _, sid := range sids {
			bySession[sid] = f
		}
		if len(sids) > 1 {
			several++
		}
	}
	if several > 0 {
		r.note("%d fans were given more than one session (cookie) during the run", several)
	}
	asked := map[int]map[string]bool{}
	for _, o := range h.snapshot() {
		if o.Kind == "hold" && o.Outcome != outcomeFail {
			if asked[o.Fan] == nil {
				asked[o.Fan] = map[string]bool{}
			}
			for _, s := range o.Seats {
				asked[o.Fan][s] = true
			}
		}
	}
	perFan := map[string]int{}
	for _, o := range c.orders(ctx, r) {
		if o.Status != "confirmed" {
			continue
		}
		perFan[o.Session] += len(o.Seats)
		f := bySession[o.Session]
		if f == nil {
			r.violation("order %s belongs to session %s, no fan of this run", o.ID, o.Session)
			continue
		}
		for _, s := range o.Seats {
			if !asked[f.n][s] {
				r.violation("fan %d bought seat %s it never asked to hold (order %s)", f.n, s, o.ID)
			}
		}
	}
	over, most := 0, 0
	for _, n := range perFan {
		if n > maxSeatsPerFan {
			over++
		}
		most = max(most, n)
	}
	if over > 0 {
		r.note("policy: %d fans bought more than MAX_SEATS_PER_FAN=%d seats (the most: %d); the limit is kept in Redis (fanbought) "+
			"and was lost with it", over, maxSeatsPerFan, most)
	}
	r.figure("fans_over_seat_limit", over)
	r.figure("most_seats_one_fan", most)
}

// checkOrderAPI: every order answered ok is shown to its fan by GET
// /api/orders/{order} as confirmed, with the same seats and total.
func (c *cluster) checkOrderAPI(ctx context.Context, r *report, h *history, fans []*fan) {
	byN := map[int]*fan{}
	for _, f := range fans {
		byN[f.n] = f
	}
	seen := map[string]bool{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, o := range h.snapshot() {
		if o.Kind != "checkout" || o.Outcome != outcomeOK || seen[o.OrderID] || byN[o.Fan] == nil {
			continue
		}
		seen[o.OrderID] = true
		f := byN[o.Fan]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var rep reply
			for try := 0; try < 5; try++ {
				if rep = f.do(ctx, f.server(), "GET", "/api/orders/"+o.OrderID, nil, 10*time.Second); rep.status == 200 {
					break
				}
				f.failover()
				sleepCtx(ctx, 200*time.Millisecond)
			}
			var got struct {
				Status     string   `json:"status"`
				Seats      []string `json:"seats"`
				TotalCents int64    `json:"total_cents"`
			}
			if rep.status != 200 || json.Unmarshal(rep.body, &got) != nil {
				r.violation("GET /api/orders/%s for its fan %d: %d %s", o.OrderID, o.Fan, rep.status, rep.code)
				return
			}
			if got.Status != "confirmed" || !slices.Equal(slices.Sorted(slices.Values(got.Seats)), slices.Sorted(slices.Values(o.Seats))) || got.TotalCents != o.Total {
				r.violation("GET /api/orders/%s shows %s %v %d, the checkout answered %v %d", o.OrderID, got.Status, got.Seats, got.TotalCents, o.Seats, o.Total)
			}
		}()
	}
	wg.Wait()
	r.figure("orders_read_back", len(seen))
}

// soldTruth returns the event's sold seats from Postgres, sorted.
func (c *cluster) soldTruth(ctx context.Context, r *report, ev *event) []string {
	return c.strings1(ctx, r, "sold seats", `SELECT id FROM seats WHERE event_id = $1 AND status = 'sold' ORDER BY id`, ev.ID)
}

// heldTruth returns the seats with a hold key in Redis.
func (c *cluster) heldTruth(ctx context.Context, ev *event) (map[string]bool, error) {
	keys := make([]string, len(ev.Seats))
	for i, s := range ev.Seats {
		keys[i] = "hold:{" + ev.ID + "}:" + s
	}
	vals, err := c.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for i, v := range vals {
		if v != nil {
			out[ev.Seats[i]] = true
		}
	}
	return out, nil
}

// mapDiff compares a map with the truth and describes the differences.
func mapDiff(ev *event, seats map[string]string, sold []string, held map[string]bool) string {
	want := map[string]string{}
	for _, s := range ev.Seats {
		want[s] = "available"
	}
	for s := range held {
		want[s] = "held"
	}
	for _, s := range sold {
		want[s] = "sold"
	}
	var diffs []string
	for _, s := range ev.Seats {
		got := seats[s]
		if got == "" {
			got = "missing"
		}
		w := want[s]
		if held == nil && w != "sold" && got != "sold" {
			continue // only sold-ness is compared
		}
		if got != w {
			diffs = append(diffs, fmt.Sprintf("%s=%s(want %s)", s, got, w))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	sort.Strings(diffs)
	if len(diffs) > 8 {
		diffs = append(diffs[:8], fmt.Sprintf("… %d more", len(diffs)-8))
	}
	return strings.Join(diffs, " ")
}

// checkMaps: live maps converge to the truth without reconnecting, and a
// fresh socket of every admitted fan shows exactly the truth.
func (c *cluster) checkMaps(ctx context.Context, r *report, ev *event, fans []*fan, opt checkOptions) {
	sold := c.soldTruth(ctx, r, ev)
	var held map[string]bool
	if opt.held {
		var err error
		if held, err = c.heldTruth(ctx, ev); err != nil {
			r.violation("checker could not read holds: %v", err)
			return
		}
	}
	if opt.liveMaps {
		deadline := time.Now().Add(15 * time.Second)
		var bad []string
		checked := 0
		for {
			bad, checked = bad[:0], 0
			for _, f := range fans {
				if f.live == nil || f.ev != ev {
					continue
				}
				seats := f.live.state()
				if _, ok := f.live.sold(); !ok {
					continue // between sockets
				}
				checked++
				if d := mapDiff(ev, seats, sold, held); d != "" {
					bad = append(bad, fmt.Sprintf("fan %d: %s", f.n, d))
				}
			}
			if len(bad) == 0 || time.Now().After(deadline) {
				break
			}
			sleepCtx(ctx, 250*time.Millisecond)
		}
		r.figure("live_maps_checked", checked)
		for _, b := range bad {
			r.violation("live map never converged to the truth: %s", b)
		}
	}
	if opt.snapshots {
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		n := 0
		for _, f := range fans {
			if f.ev != ev || f.sessionID() == "" {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				var seats map[string]string
				var err error
				for try := 0; try < 3; try++ {
					if seats, err = f.fetchSnapshot(ctx, f.server()); err == nil {
						break
					}
					f.failover()
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					r.violation("fan %d could not get a snapshot: %v", f.n, err)
					return
				}
				n++
				if d := mapDiff(ev, seats, sold, held); d != "" {
					r.violation("fan %d's snapshot after reconnecting differs from the truth: %s", f.n, d)
				}
			}()
		}
		wg.Wait()
		r.Maps += n
	}
}
