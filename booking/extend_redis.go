package booking

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// extendedKey records that fanID used its one hold extension in eventID.
func extendedKey(eventID, fanID string) string { return "extended:{" + eventID + "}:" + fanID }

// extendScript lengthens every live hold of one fan by the same amount, once:
// it refuses when the fan's extension record exists, and writes the record
// only when something was extended. Each extended hold's cool-down key is
// stretched to outlive it by the cool-down (as claimScript does), so an
// extended hold that lapses unpaid still starts the cool-down; the fan's
// hold set outlives its longest hold.
// KEYS: fanholds, extended. ARGV: fan, by ms, hold key prefix, cool key
// prefix, cool-down ms, record lifetime ms.
// Returns {"used"}, {"none"} or {"ok", seat, pttl, ...}.
var extendScript = redis.NewScript(luaMine + `
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'used'}
end
local tag = ARGV[1] .. '|'
local by = tonumber(ARGV[2])
local hp, cp = ARGV[3], ARGV[4]
local cool = tonumber(ARGV[5])
local record = tonumber(ARGV[6])
local out, longest = {'ok'}, 0
for _, seat in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = hp .. seat
  if not mine(redis.call('GET', k), tag) then
    redis.call('SREM', KEYS[1], seat)
  else
    local left = redis.call('PTTL', k)
    if left > 0 then
      local ttl = left + by
      redis.call('PEXPIRE', k, ttl)
      local ck = cp .. seat
      local cleft = redis.call('PTTL', ck)
      if cleft == -2 or (cleft >= 0 and cleft < ttl + cool) then
        redis.call('SET', ck, '1', 'PX', ttl + cool)
      end
      if ttl > longest then
        longest = ttl
      end
      out[#out + 1] = seat
      out[#out + 1] = ttl
    end
  end
end
if #out == 1 then
  return {'none'}
end
local fl = redis.call('PTTL', KEYS[1])
if fl >= 0 and fl < longest then
  redis.call('PEXPIRE', KEYS[1], longest)
end
if record < longest then
  record = longest
end
redis.call('SET', KEYS[2], '1', 'PX', record)
return out
`)

// ExtendHolds lengthens every live hold fanID has in eventID by by — the
// fan's one-time "I need more time" (WCAG 2.2.1 Timing Adjustable) — and
// returns the fan's holds with their new expiry.
//
// A fan may extend once per event: the use is recorded in Redis, atomically
// with the extension, and lives until the event starts (at least as long as
// the extended holds). It counts against nothing else: not the seat limit,
// not the cool-down (which is stretched with each hold so a lapse still
// starts it). The new expiries reach every live map through the hold keys'
// keyspace notifications, so hold_expiring warnings follow them.
//
// Errors: bad_request for an invalid fan id, by outside (0, HoldTTL], a fan
// who already used the extension ("You already used your extension.") or
// who holds nothing (the extension is then not used up); not_found for an
// unknown event; unavailable when Redis or Postgres fail. Safe for
// concurrent use: two parallel calls extend once.
func (s *Service) ExtendHolds(ctx context.Context, eventID, fanID string, by time.Duration) (HoldSet, error) {
	if !ValidFanID(fanID) {
		return HoldSet{}, Errorf(ECodeBadRequest, "invalid fan id")
	}
	if by <= 0 || by > s.cfg.HoldTTL {
		return HoldSet{}, Errorf(ECodeBadRequest, "an extension must be longer than 0 and at most %s", s.cfg.HoldTTL)
	}
	ev, err := s.Event(ctx, eventID)
	if err != nil {
		return HoldSet{}, err
	}
	cat, err := s.Catalog(ctx, eventID)
	if err != nil {
		return HoldSet{}, err
	}
	record := ev.StartsAt.Sub(s.now())
	keys := []string{fanHoldsKey(eventID, fanID), extendedKey(eventID, fanID)}
	v, err := extendScript.Run(ctx, s.scripts, keys, fanID, msArg(by), holdPrefix(eventID), coolPrefix(eventID, fanID),
		msArg(s.cfg.HoldCooldown), msArg(record)).Slice()
	if err != nil {
		return HoldSet{}, unavailable("redis: extend holds", err)
	}
	if len(v) == 0 {
		return HoldSet{}, fmt.Errorf("redis: extend holds: empty answer")
	}
	switch v[0] {
	case "used":
		return HoldSet{}, Errorf(ECodeBadRequest, "You already used your extension.")
	case "none":
		return HoldSet{}, Errorf(ECodeBadRequest, "You have no seats on hold to extend.")
	case "ok":
		return s.holdSet(cat, pairsToTTLs(v[1:])), nil
	}
	return HoldSet{}, fmt.Errorf("redis: extend holds: unexpected answer %v", v[0])
}

// HoldsExtended reports whether fanID already used its one hold extension
// in eventID (see ExtendHolds). Errors: bad_request for an invalid fan id,
// unavailable when Redis fails.
func (s *Service) HoldsExtended(ctx context.Context, eventID, fanID string) (bool, error) {
	if !ValidFanID(fanID) {
		return false, Errorf(ECodeBadRequest, "invalid fan id")
	}
	n, err := s.rdb.Exists(ctx, extendedKey(eventID, fanID)).Result()
	if err != nil {
		return false, unavailable("redis: read hold extension", err)
	}
	return n == 1, nil
}
