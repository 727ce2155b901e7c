package booking

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keys (DESIGN.md). Every key of event E carries the hash tag {E}, so
// one event lives in one Redis Cluster slot and each script is single-slot.
// Scripts build per-seat keys from the prefixes below; they share the tag.

func holdPrefix(eventID string) string         { return "hold:{" + eventID + "}:" }
func holdKey(eventID, seat string) string      { return holdPrefix(eventID) + seat }
func fanHoldsKey(eventID, fanID string) string { return "fanholds:{" + eventID + "}:" + fanID }
func fanBoughtKey(eventID, fanID string) string {
	return "fanbought:{" + eventID + "}:" + fanID
}
func soldKey(eventID string) string              { return "sold:{" + eventID + "}" }
func streamKey(eventID string) string            { return "stream:{" + eventID + "}" }
func coolPrefix(eventID, fanID string) string    { return "cool:{" + eventID + "}:" + fanID + ":" }
func coolKey(eventID, fanID, seat string) string { return coolPrefix(eventID, fanID) + seat }
func holdValue(fanID string, version int) string { return fanID + "|" + strconv.Itoa(version) }
func msArg(d time.Duration) int64                { return max(1, d.Milliseconds()) }

// holdOwner splits a hold value "fan|version".
func holdOwner(v string) (fanID string, version int, ok bool) {
	i := strings.LastIndexByte(v, '|')
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(v[i+1:])
	if err != nil {
		return "", 0, false
	}
	return v[:i], n, true
}

// luaMine is shared by the scripts: is hold value v this fan's (tag = fan.."|")?
const luaMine = `
local function mine(v, tag) return v and string.sub(v, 1, #tag) == tag end
`

// luaAdmitted is shared by the scripts that need the fan's admission: when
// the script got the admission key (the last key, after n of its own), its
// value — until when the fan is admitted, Unix ms — must be after now (ms).
const luaAdmitted = `
local function admitted(n, now)
  if #KEYS <= n then return true end
  local untilMs = tonumber(redis.call('GET', KEYS[n + 1]))
  return untilMs ~= nil and untilMs > now
end
`

// Admission is the waiting room's side of holds and checkout (DESIGN.md
// invariant 5). Its key is read by the hold and claim scripts, so checking
// the admission costs no round trip of its own.
type Admission interface {
	// AdmissionKey is the Redis key (with the event's hash tag) whose value
	// is the Unix time in milliseconds until which fanID is admitted to
	// eventID; absent when the fan is not admitted.
	AdmissionKey(eventID, fanID string) string
	// Admitted is the same check on its own: when fanID's admission ends,
	// or a not_admitted *Error.
	Admitted(ctx context.Context, eventID, fanID string) (time.Time, error)
}

// NotAdmitted is the answer to a hold or checkout of a fan the waiting room
// has not admitted (or whose admission expired).
func NotAdmitted() *Error {
	return Errorf(ECodeNotAdmitted, "wait for your turn in the waiting room first")
}

// withAdmission appends adm's key for fanID to keys (none for nil adm).
func withAdmission(keys []string, adm Admission, eventID, fanID string) []string {
	if adm == nil {
		return keys
	}
	return append(keys, adm.AdmissionKey(eventID, fanID))
}

// holdScript takes new holds for one fan, all or nothing.
// KEYS: fanholds, fanbought, sold[, admission].
// ARGV: fan, hold ttl ms, cool-down key ttl ms, max seats, hold key prefix,
// cool key prefix, now ms, then seat, version pairs.
// Returns {"ok", seat, pttl, ...} (all the fan's holds), {"taken", seat...},
// {"limit", held, bought, asked} or {"not_admitted"}.
var holdScript = redis.NewScript(luaMine + luaAdmitted + `
if not admitted(3, tonumber(ARGV[7])) then
  return {'not_admitted'}
end
local fan = ARGV[1]
local tag = fan .. '|'
local ttl = tonumber(ARGV[2])
local coolttl = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local hp, cp = ARGV[5], ARGV[6]
local held, nheld = {}, 0
for _, seat in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if mine(redis.call('GET', hp .. seat), tag) then
    held[seat] = true
    nheld = nheld + 1
  else
    redis.call('SREM', KEYS[1], seat)
  end
end
local taken, new = {}, {}
for i = 8, #ARGV, 2 do
  local seat = ARGV[i]
  if not held[seat] then
    local v = redis.call('GET', hp .. seat)
    if mine(v, tag) then
      held[seat] = true
      nheld = nheld + 1
      redis.call('SADD', KEYS[1], seat)
    elseif v or redis.call('SISMEMBER', KEYS[3], seat) == 1 or redis.call('EXISTS', cp .. seat) == 1 then
      taken[#taken + 1] = seat
    else
      new[#new + 1] = i
    end
  end
end
if #taken > 0 then
  return {'taken', unpack(taken)}
end
local bought = redis.call('SCARD', KEYS[2])
if nheld + bought + #new > max then
  return {'limit', nheld, bought, #new}
end
for _, i in ipairs(new) do
  local seat = ARGV[i]
  redis.call('SET', hp .. seat, tag .. ARGV[i + 1], 'PX', ttl)
  redis.call('SET', cp .. seat, '1', 'PX', coolttl)
  redis.call('SADD', KEYS[1], seat)
end
if #new > 0 and redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
local out = {'ok'}
for _, seat in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = seat
  out[#out + 1] = redis.call('PTTL', hp .. seat)
end
return out
`)

// holdsScript lists (and prunes) one fan's live holds.
// KEYS: fanholds. ARGV: fan, hold key prefix. Returns {seat, pttl, ...}.
var holdsScript = redis.NewScript(luaMine + `
local tag = ARGV[1] .. '|'
local out = {}
for _, seat in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local k = ARGV[2] .. seat
  if mine(redis.call('GET', k), tag) then
    out[#out + 1] = seat
    out[#out + 1] = redis.call('PTTL', k)
  else
    redis.call('SREM', KEYS[1], seat)
  end
end
return out
`)

// releaseScript drops a hold if it is the fan's.
// KEYS: hold key, fanholds, cool key. ARGV: fan, seat. Returns 1 or 0.
var releaseScript = redis.NewScript(luaMine + `
redis.call('SREM', KEYS[2], ARGV[2])
if mine(redis.call('GET', KEYS[1]), ARGV[1] .. '|') then
  redis.call('DEL', KEYS[1], KEYS[3])
  return 1
end
return 0
`)

// claimScript verifies, for checkout, that every seat in the fan's set is
// still held by the fan with at least min-left ms to go, and if so extends
// each hold (and its cool-down key) to the payment window; nothing is
// changed when a hold is lost, except that foreign or vanished seats leave
// the fan's set.
// KEYS: fanholds[, admission]. ARGV: fan, min left ms, window ms, hold key
// prefix, cool key prefix, cool-down ms, now ms.
// Returns {"ok", seat, value, ...}, {"lost", seat...}, {"none"} or
// {"not_admitted"}.
var claimScript = redis.NewScript(luaMine + luaAdmitted + `
if not admitted(1, tonumber(ARGV[7])) then
  return {'not_admitted'}
end
local tag = ARGV[1] .. '|'
local minleft = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local hp, cp = ARGV[4], ARGV[5]
local coolwin = window + tonumber(ARGV[6])
local seats = redis.call('SMEMBERS', KEYS[1])
if #seats == 0 then
  return {'none'}
end
local lost, vals = {}, {}
for _, seat in ipairs(seats) do
  local v = redis.call('GET', hp .. seat)
  if not mine(v, tag) then
    lost[#lost + 1] = seat
    redis.call('SREM', KEYS[1], seat)
  else
    local left = redis.call('PTTL', hp .. seat)
    if left >= 0 and left < minleft then
      lost[#lost + 1] = seat
    end
    vals[seat] = v
  end
end
if #lost > 0 then
  return {'lost', unpack(lost)}
end
local out = {'ok'}
for _, seat in ipairs(seats) do
  local k = hp .. seat
  local left = redis.call('PTTL', k)
  if left >= 0 and left < window then
    redis.call('PEXPIRE', k, window)
  end
  local ck = cp .. seat
  local cleft = redis.call('PTTL', ck)
  if cleft >= 0 and cleft < coolwin or cleft == -2 then
    redis.call('SET', ck, '1', 'PX', coolwin)
  end
  out[#out + 1] = seat
  out[#out + 1] = vals[seat]
end
local fl = redis.call('PTTL', KEYS[1])
if fl >= 0 and fl < window then
  redis.call('PEXPIRE', KEYS[1], window)
end
return out
`)

// soldScript records a committed sale in Redis: the seats join the sold set
// and the fan's bought set, and the fan's holds and cool-down keys on them
// go (a hold is deleted only if it is still the fan's).
// KEYS: sold, fanbought, fanholds. ARGV: fan, hold key prefix, cool key
// prefix, seats...
var soldScript = redis.NewScript(luaMine + `
local tag = ARGV[1] .. '|'
for i = 4, #ARGV do
  local seat = ARGV[i]
  redis.call('SADD', KEYS[1], seat)
  redis.call('SADD', KEYS[2], seat)
  local k = ARGV[2] .. seat
  if mine(redis.call('GET', k), tag) then
    redis.call('DEL', k)
  end
  redis.call('SREM', KEYS[3], seat)
  redis.call('DEL', ARGV[3] .. seat)
end
return 1
`)

// holdResult is the parsed answer of holdScript.
type holdResult struct {
	holds               map[string]time.Duration
	taken               []string
	limit               bool
	notAdmitted         bool
	held, bought, asked int64
}

func (s *Service) holdRedis(ctx context.Context, eventID, fanID string, seats []string, versions []int, adm Admission) (holdResult, error) {
	args := []any{fanID, msArg(s.cfg.HoldTTL), msArg(s.cfg.HoldTTL + s.cfg.HoldCooldown), s.cfg.MaxSeatsPerFan,
		holdPrefix(eventID), coolPrefix(eventID, fanID), s.now().UnixMilli()}
	for i, seat := range seats {
		args = append(args, seat, versions[i])
	}
	keys := withAdmission([]string{fanHoldsKey(eventID, fanID), fanBoughtKey(eventID, fanID), soldKey(eventID)}, adm, eventID, fanID)
	v, err := holdScript.Run(ctx, s.scripts, keys, args...).Slice()
	if err != nil {
		return holdResult{}, unavailable("redis: hold seats", err)
	}
	if len(v) == 0 {
		return holdResult{}, fmt.Errorf("redis: hold seats: empty answer")
	}
	var res holdResult
	switch v[0] {
	case "not_admitted":
		res.notAdmitted = true
	case "taken":
		res.taken = toStrings(v[1:])
	case "limit":
		if len(v) != 4 {
			return holdResult{}, fmt.Errorf("redis: hold seats: malformed limit answer %v", v)
		}
		res.limit = true
		res.held, _ = v[1].(int64)
		res.bought, _ = v[2].(int64)
		res.asked, _ = v[3].(int64)
	case "ok":
		res.holds = pairsToTTLs(v[1:])
	default:
		return holdResult{}, fmt.Errorf("redis: hold seats: unexpected answer %v", v[0])
	}
	return res, nil
}

func (s *Service) holdsRedis(ctx context.Context, eventID, fanID string) (map[string]time.Duration, error) {
	v, err := holdsScript.Run(ctx, s.scripts, []string{fanHoldsKey(eventID, fanID)}, fanID, holdPrefix(eventID)).Slice()
	if err != nil {
		return nil, unavailable("redis: list holds", err)
	}
	return pairsToTTLs(v), nil
}

func (s *Service) releaseRedis(ctx context.Context, eventID, fanID, seat string) (bool, error) {
	keys := []string{holdKey(eventID, seat), fanHoldsKey(eventID, fanID), coolKey(eventID, fanID, seat)}
	n, err := releaseScript.Run(ctx, s.scripts, keys, fanID, seat).Int()
	if err != nil {
		return false, unavailable("redis: release hold", err)
	}
	return n == 1, nil
}

// claimResult is the parsed answer of claimScript.
type claimResult struct {
	notAdmitted bool
	none        bool
	lost        []string
	seats       map[string]int // seat → version carried by the hold
}

// claimHolds verifies and extends fanID's holds for checkout.
func (s *Service) claimHolds(ctx context.Context, eventID, fanID string, adm Admission) (claimResult, error) {
	v, err := claimScript.Run(ctx, s.scripts, withAdmission([]string{fanHoldsKey(eventID, fanID)}, adm, eventID, fanID),
		fanID, msArg(s.cfg.MinHoldLeft), msArg(s.cfg.PaymentWindow), holdPrefix(eventID), coolPrefix(eventID, fanID),
		msArg(s.cfg.HoldCooldown), s.now().UnixMilli()).Slice()
	if err != nil {
		return claimResult{}, unavailable("redis: claim holds", err)
	}
	if len(v) == 0 {
		return claimResult{}, fmt.Errorf("redis: claim holds: empty answer")
	}
	switch v[0] {
	case "not_admitted":
		return claimResult{notAdmitted: true}, nil
	case "none":
		return claimResult{none: true}, nil
	case "lost":
		return claimResult{lost: toStrings(v[1:])}, nil
	case "ok":
		res := claimResult{seats: map[string]int{}}
		for i := 1; i+1 < len(v); i += 2 {
			seat, _ := v[i].(string)
			val, _ := v[i+1].(string)
			owner, version, ok := holdOwner(val)
			if !ok || owner != fanID {
				return claimResult{}, fmt.Errorf("redis: claim holds: malformed hold value %q", val)
			}
			res.seats[seat] = version
		}
		return res, nil
	}
	return claimResult{}, fmt.Errorf("redis: claim holds: unexpected answer %v", v[0])
}

// markSoldRedis records a committed sale in Redis (soldScript).
func (s *Service) markSoldRedis(ctx context.Context, eventID, fanID string, seats []string) error {
	args := []any{fanID, holdPrefix(eventID), coolPrefix(eventID, fanID)}
	for _, seat := range seats {
		args = append(args, seat)
	}
	keys := []string{soldKey(eventID), fanBoughtKey(eventID, fanID), fanHoldsKey(eventID, fanID)}
	if err := soldScript.Run(ctx, s.scripts, keys, args...).Err(); err != nil {
		return unavailable("redis: mark seats sold", err)
	}
	return nil
}

func toStrings(v []any) []string {
	out := make([]string, 0, len(v))
	for _, x := range v {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// pairsToTTLs reads {seat, pttl-ms, ...}; a hold without expiry counts as
// expiring now (it should not exist).
func pairsToTTLs(v []any) map[string]time.Duration {
	out := make(map[string]time.Duration, len(v)/2)
	for i := 0; i+1 < len(v); i += 2 {
		seat, _ := v[i].(string)
		ms, _ := v[i+1].(int64)
		if ms < 0 {
			ms = 0
		}
		out[seat] = time.Duration(ms) * time.Millisecond
	}
	return out
}
