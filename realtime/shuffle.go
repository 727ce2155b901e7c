package realtime

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// The verifiable pre-queue shuffle. Fans who join before on_sale_at get a
// random public entry id and wait unplaced in queue:{E}:pre. When the event
// is created, booking draws a secret seed and publishes its SHA-256. When the
// sale opens, the first process to notice (a join, a poll or Run's tick)
// orders the entry ids by ShuffleOrder(seed, ids) and hands out tickets 1..N
// in that order. The seed is then revealed (Shuffle), so anyone can check
// that the seed matches the published hash and recompute the order from the
// revealed entry ids; a fan finds their own entry id in their queue status.
// Because the seed is fixed before anyone joins and the hash is public, the
// operator cannot pick a favourable seed after seeing who joined, and a fan
// cannot improve their place by rejoining (their entry id never changes).

// ShuffleInfo is the public record of an event's pre-queue draw.
type ShuffleInfo struct {
	// SeedSHA256 is the hex SHA-256 of the secret seed, published before the sale.
	SeedSHA256 string `json:"seed_sha256"`
	// Seed is the hex seed, revealed once the sale has opened.
	Seed string `json:"seed,omitempty"`
	// Entries are the pre-queue's entry ids in their drawn order (ticket 1
	// first), once the sale has opened. ShuffleOrder(seed, Entries) returns
	// Entries again.
	Entries []string `json:"entries,omitempty"`
}

// ShuffleOrder returns entryIDs sorted by HMAC-SHA256(seed, entry id), ties
// (equal ids) by entry id. It is pure and does not modify its input, so anyone
// holding the revealed seed and entry ids can recompute the pre-queue order.
func ShuffleOrder(seed []byte, entryIDs []string) []string {
	type keyed struct {
		mac []byte
		id  string
	}
	ks := make([]keyed, len(entryIDs))
	for i, id := range entryIDs {
		m := hmac.New(sha256.New, seed)
		m.Write([]byte(id))
		ks[i] = keyed{mac: m.Sum(nil), id: id}
	}
	sort.Slice(ks, func(i, j int) bool {
		if c := bytes.Compare(ks[i].mac, ks[j].mac); c != 0 {
			return c < 0
		}
		return ks[i].id < ks[j].id
	})
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.id
	}
	return out
}

// readPreScript returns {opened} if the line is open, else {0, fan, entry, ...}
// for every fan of the pre-queue. It first freezes the pre-queue (opening,
// PX ARGV[1]): a fan joining it meanwhile is told the line needs opening
// instead, helps open it and takes a ticket after the pre-queue. Without the
// freeze, fans joining the pre-queue faster than the order is computed (a
// process whose clock is behind) could make every attempt to place it stale.
//
// KEYS: opened pre entries opening. ARGV: freeze ms.
var readPreScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[1])
local out = {0}
for _, fan in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  out[#out + 1] = fan
  out[#out + 1] = redis.call('HGET', KEYS[3], fan) or ''
end
return out`)

// openScript places the pre-queue in the given order and opens the line. It
// refuses (returns 0) if the pre-queue no longer has the expected size — a
// fan joined it after the order was computed — so the caller recomputes; the
// pre-queue only ever grows while the line is closed, so an equal size means
// the same fans. It returns 1 if the line is (now or already) open.
//
// KEYS: opened pre seq tickets order shuffled opening
// ARGV: now-ms expected-size fan entry fan entry ...
var openScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[2]) ~= tonumber(ARGV[2]) then return 0 end
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
redis.call('DEL', KEYS[6])
for i = 3, #ARGV, 2 do
  local fan = ARGV[i]
  if redis.call('HEXISTS', KEYS[4], fan) == 0 then
    seq = seq + 1
    redis.call('HSET', KEYS[4], fan, seq)
    redis.call('ZADD', KEYS[5], seq, fan)
  end
  redis.call('RPUSH', KEYS[6], ARGV[i + 1])
end
redis.call('SET', KEYS[3], string.format('%.0f', seq))
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[7])
return 1`)

// seedFor returns the event's secret shuffle seed, cached per room.
func (w *WaitingRoom) seedFor(ctx context.Context, eventID string) ([]byte, error) {
	w.mu.Lock()
	r := w.roomFor(eventID)
	seed := r.seed
	w.mu.Unlock()
	if seed != nil {
		return seed, nil
	}
	seed, err := w.events.ShuffleSeed(ctx, eventID)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	r.seed = seed
	w.mu.Unlock()
	return seed, nil
}

// openingFreeze bounds how long the pre-queue stays frozen for one opening:
// if the opener dies, joiners go back to joining it after that (and each
// helps open the line anyway).
const openingFreeze = 10 * time.Second

// ensureOpen places eventID's pre-queue in shuffle order and opens its line,
// unless that is done already. Concurrent callers in any process are safe:
// the placement happens once, atomically with respect to joins. The caller
// checks that the sale has opened.
func (w *WaitingRoom) ensureOpen(ctx context.Context, eventID string) error {
	k := queueKeysFor(eventID)
	var seed []byte
	for attempt := 0; attempt < 10; attempt++ {
		v, err := readPreScript.Run(ctx, w.rdb, []string{k.opened, k.pre, k.entries, k.opening}, openingFreeze.Milliseconds()).Slice()
		if err != nil {
			return wrUnavailable("read pre-queue", err)
		}
		if len(v) == 0 || redisInt(v[0]) == 1 {
			return nil
		}
		if seed == nil {
			if seed, err = w.seedFor(ctx, eventID); err != nil {
				return err
			}
		}
		fanOf := make(map[string]string, len(v)/2)
		entries := make([]string, 0, len(v)/2)
		for i := 1; i+1 < len(v); i += 2 {
			fan, entry := redisString(v[i]), redisString(v[i+1])
			fanOf[entry] = fan
			entries = append(entries, entry)
		}
		args := make([]any, 0, 2+2*len(entries))
		args = append(args, unixMS(w.now()), len(entries))
		for _, e := range ShuffleOrder(seed, entries) {
			args = append(args, fanOf[e], e)
		}
		ok, err := openScript.Run(ctx, w.rdb, []string{k.opened, k.pre, k.seq, k.tickets, k.order, k.shuffled, k.opening}, args...).Int()
		if err != nil {
			return wrUnavailable("place pre-queue", err)
		}
		if ok == 1 {
			w.log.Info("waiting room: line open", "event", eventID, "pre_queue", len(entries))
			return nil
		}
	}
	return fmt.Errorf("waiting room: place pre-queue of %s: it kept changing", eventID)
}

// Shuffle returns the public record of eventID's pre-queue draw: the seed's
// published hash always, and once the sale has opened the seed itself and the
// drawn order of entry ids (placing the pre-queue first if nobody has yet).
// Errors: not_found, unavailable.
func (w *WaitingRoom) Shuffle(ctx context.Context, eventID string) (ShuffleInfo, error) {
	ev, err := w.events.Event(ctx, eventID)
	if err != nil {
		return ShuffleInfo{}, err
	}
	info := ShuffleInfo{SeedSHA256: ev.ShuffleSeedSHA256}
	if w.now().Before(ev.OnSaleAt) {
		return info, nil
	}
	if err := w.ensureOpen(ctx, eventID); err != nil {
		return ShuffleInfo{}, err
	}
	seed, err := w.seedFor(ctx, eventID)
	if err != nil {
		return ShuffleInfo{}, err
	}
	entries, err := w.rdb.LRange(ctx, queueKeysFor(eventID).shuffled, 0, -1).Result()
	if err != nil {
		return ShuffleInfo{}, wrUnavailable("read shuffle", err)
	}
	info.Seed, info.Entries = hex.EncodeToString(seed), entries
	return info, nil
}
