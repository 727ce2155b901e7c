package realtime

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The admitter. Every process that tracks an event runs tickScript for it
// once per Tick. The script takes or renews the lease admitter:{E} for its
// caller (PX LeaseTTL); only the holder's call admits, so one process admits
// per event cluster-wide, and a dead holder's lease lapses after LeaseTTL, when
// the next contender's tick takes it over. The holder's step admits the fans
// its credit allows: credit grows by rate×elapsed each step (capped at
// creditCap's worth: a step delayed by a busy machine catches up, a process
// stalled for longer does not burst), which spreads
// ADMIT_RATE over every Tick. Walking the line in ticket order, it sets
// admit:{E}:{fan} for each fan seen within LeaveGrace and skips the others,
// then moves "now serving" past them — all in the one script, so admission and
// "now serving" never disagree. The same reply carries everything the
// process's position tick needs, so a tick costs one Redis command per event.

// creditCap is the most admission time one step may make up for: two ticks,
// and at least a second, so scheduling delays on a loaded machine do not
// lower the cluster-wide rate. Under a 20,000-fan drop on two cores a tick
// took up to ~1.5 s (its Redis replies wait behind thousands of socket
// writers for the CPU); with a 250 ms cap fans were admitted at 381/s of
// the 2,000/s configured. A second's worth of ADMIT_RATE is the largest
// burst: a process stalled for longer does not make up the rest.
func creditCap(tick time.Duration) time.Duration { return max(2*tick, time.Second) }

// maxScanPerStep bounds the fans one step walks (admitted plus skipped) so a
// step stays short even behind a crowd of leavers; skipping resumes next tick.
const maxScanPerStep = 2000

// rateWindow is the span over which admission rates are measured.
const rateWindow = 5 * time.Second

// tickScript is one admitter step and the read of an event's line state.
//
// KEYS: lease serving seq order presence opened precount admitted mrate caprate rate paused
// ARGV: token lease-ms now-ms elapsed-ms credit default-rate grace-ms admit-ttl-ms
//
//	admit-prefix max-scan mrate caprate stats-ttl-ms burst-ms
//
// Returns {role, serving, seq, opened, precount, admitted-total, mrate,
// caprate, rate, paused, admitted-now, skipped-now, credit, n} where role is
// 0 (another process holds the lease), 1 (renewed) or 2 (acquired).
var tickScript = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
local role = 0
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  role = 2
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  role = 1
end
local rate = tonumber(redis.call('GET', KEYS[11])) or tonumber(ARGV[6])
local paused = redis.call('GET', KEYS[12]) == '1'
local serving = tonumber(redis.call('GET', KEYS[2]) or '0')
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local admitted, skipped, credit, n = 0, 0, 0, 0
if role > 0 then
  if ARGV[11] ~= '' then
    redis.call('SET', KEYS[9], ARGV[11], 'PX', ARGV[13])
    redis.call('SET', KEYS[10], ARGV[12], 'PX', ARGV[13])
  end
  if (not paused) and rate > 0 then
    credit = tonumber(ARGV[5]) + rate * tonumber(ARGV[4]) / 1000
    local cap = math.max(1, rate * tonumber(ARGV[14]) / 1000)
    if credit > cap then credit = cap end
    n = math.floor(credit)
    local now, grace, ttl = tonumber(ARGV[3]), tonumber(ARGV[7]), tonumber(ARGV[8])
    local untilMs = string.format('%.0f', now + ttl)
    local maxScan, scanned = tonumber(ARGV[10]), 0
    while admitted < n and scanned < maxScan do
      local batch = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. string.format('%.0f', serving), '+inf', 'WITHSCORES', 'LIMIT', 0, 256)
      if #batch == 0 then
        -- Every ticket up to seq is processed; the rest were re-queued fans' old numbers.
        if seq > serving then serving = seq end
        break
      end
      for i = 1, #batch, 2 do
        local fan = batch[i]
        local seen = tonumber(redis.call('ZSCORE', KEYS[5], fan))
        if seen and now - seen <= grace then
          redis.call('SET', ARGV[9] .. fan, untilMs, 'PX', ARGV[8])
          admitted = admitted + 1
        else
          skipped = skipped + 1
        end
        redis.call('ZREM', KEYS[5], fan)
        serving = tonumber(batch[i + 1])
        scanned = scanned + 1
        if admitted >= n or scanned >= maxScan then break end
      end
    end
    redis.call('SET', KEYS[2], string.format('%.0f', serving))
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', string.format('%.0f', serving))
    if admitted > 0 then redis.call('INCRBY', KEYS[8], admitted) end
    credit = credit - admitted
  end
end
return {role, serving, seq, redis.call('EXISTS', KEYS[6]), tonumber(redis.call('GET', KEYS[7]) or '0'),
  tonumber(redis.call('GET', KEYS[8]) or '0'), redis.call('GET', KEYS[9]) or '', redis.call('GET', KEYS[10]) or '',
  tostring(rate), paused and 1 or 0, admitted, skipped, tostring(credit), n}
`)

// admitTick is an event's line as one tick saw it.
type admitTick struct {
	role          int64
	serving, seq  int64
	opened        bool
	precount      int64
	admittedTotal int64
	mrate         float64
	capRate       float64
	settings      AdmissionSettings
	admitted      int
	skipped       int
	credit        float64
	n             int
}

// stepSample is one admitter step of this process, for rate measurement.
type stepSample struct {
	at       time.Time
	elapsed  time.Duration
	admitted int
	full     bool // admitted all it was allowed to: fans were waiting
}

// step runs one admitter step (or lease contention) for r and returns the
// event's state. Only Run's goroutine calls it.
func (w *WaitingRoom) step(ctx context.Context, r *queueRoom, now time.Time) (admitTick, error) {
	k := queueKeysFor(r.id)
	elapsed := w.cfg.Tick
	if r.holding && !r.lastStep.IsZero() {
		elapsed = now.Sub(r.lastStep)
		if elapsed < 0 {
			elapsed = 0
		}
	}
	mrate, capRate := "", ""
	if r.holding {
		m, c := measureRates(r.samples, now, r.holdSince, w.cfg.Tick)
		mrate, capRate = strconv.FormatFloat(m, 'f', 3, 64), strconv.FormatFloat(c, 'f', 3, 64)
	}
	credit := 0.0
	if r.holding {
		credit = r.credit
	}
	v, err := tickScript.Run(ctx, w.rdb,
		[]string{k.lease, k.serving, k.seq, k.order, k.presence, k.opened, k.precount, k.admitted, k.mrate, k.caprate, k.rate, k.paused},
		w.token, w.cfg.LeaseTTL.Milliseconds(), unixMS(now), elapsed.Milliseconds(), strconv.FormatFloat(credit, 'f', 6, 64),
		w.cfg.AdmitRate, w.cfg.LeaveGrace.Milliseconds(), w.cfg.AdmitTTL.Milliseconds(), k.admitPrefix, maxScanPerStep,
		mrate, capRate, (3 * w.cfg.LeaseTTL).Milliseconds(), creditCap(w.cfg.Tick).Milliseconds()).Slice()
	if err != nil {
		return admitTick{}, wrUnavailable("admitter step", err)
	}
	if len(v) != 14 {
		return admitTick{}, fmt.Errorf("waiting room: admitter step: unexpected reply %v", v)
	}
	ts := admitTick{
		role: redisInt(v[0]), serving: redisInt(v[1]), seq: redisInt(v[2]), opened: redisInt(v[3]) == 1,
		precount: redisInt(v[4]), admittedTotal: redisInt(v[5]), mrate: redisFloat(v[6]), capRate: redisFloat(v[7]),
		admitted: int(redisInt(v[10])), skipped: int(redisInt(v[11])), credit: redisFloat(v[12]), n: int(redisInt(v[13])),
	}
	ts.settings = AdmissionSettings{Rate: int(redisFloat(v[8])), Paused: redisInt(v[9]) == 1}

	switch {
	case ts.role == 0:
		if r.holding {
			w.log.Info("waiting room: admitter lease lost", "event", r.id)
		}
		r.holding, r.samples, r.credit = false, nil, 0
	case ts.role == 2 || !r.holding:
		w.log.Info("waiting room: admitter lease acquired", "event", r.id)
		r.holding, r.holdSince, r.samples = true, now, nil
		fallthrough
	default:
		r.credit = ts.credit
		r.samples = append(r.samples, stepSample{at: now, elapsed: elapsed, admitted: ts.admitted, full: ts.n > 0 && ts.admitted == ts.n})
		cut := 0
		for cut < len(r.samples) && now.Sub(r.samples[cut].at) > rateWindow {
			cut++
		}
		r.samples = r.samples[cut:]
	}
	r.lastStep = now
	return ts, nil
}

// measureRates returns the admissions per second over the last rateWindow
// (or since this process took the lease) and the throughput of the steps that
// used all their credit — what a waiting fan can expect.
func measureRates(samples []stepSample, now, since time.Time, tick time.Duration) (perSecond, throughput float64) {
	span := rateWindow
	if d := now.Sub(since); d < span {
		span = d
	}
	if span < tick {
		span = tick
	}
	var all, full int
	var fullTime time.Duration
	for _, s := range samples {
		if now.Sub(s.at) > rateWindow {
			continue
		}
		all += s.admitted
		if s.full {
			full += s.admitted
			fullTime += s.elapsed
		}
	}
	perSecond = float64(all) / span.Seconds()
	if fullTime > 0 {
		throughput = float64(full) / fullTime.Seconds()
	}
	return perSecond, throughput
}

// releaseScript deletes the lease if this process still holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// releaseLeases hands back every admitter lease this process holds, so
// another process takes over at its next tick instead of after LeaseTTL.
func (w *WaitingRoom) releaseLeases() {
	if w.keepLeaseOnStop {
		return
	}
	w.mu.Lock()
	var held []string
	for id, r := range w.rooms {
		if r.holding {
			held = append(held, id)
			r.holding = false
		}
	}
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, id := range held {
		if err := releaseScript.Run(ctx, w.rdb, []string{queueKeysFor(id).lease}, w.token).Err(); err != nil {
			w.log.Warn("waiting room: release admitter lease", "event", id, "err", err)
		}
	}
}
