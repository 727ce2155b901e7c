package web

import (
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"seatmap/booking"
)

// Limits are the token-bucket rates of the write paths: per session (a fan's
// cookie) and per client address (many fans may share one NAT, so that limit
// is looser). A zero Rate disables that limit.
type Limits struct {
	// SessionRate/SessionBurst: requests per second per fan and action
	// (default 5/s, burst 10: faster than any person clicks).
	SessionRate  float64
	SessionBurst int
	// AddressRate/AddressBurst: requests per second per address and action
	// (RATE_LIMIT_PER_ADDRESS, default 200/s, burst 400; 0 turns it off, for
	// load tests from one machine).
	AddressRate  float64
	AddressBurst int
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{SessionRate: 5, SessionBurst: 10, AddressRate: 200, AddressBurst: 400}
}

// limiter keeps one token bucket per key in sharded maps, forgetting buckets
// idle for a minute so memory stays bounded by recent clients.
type limiter struct {
	seed   maphash.Seed
	shards [64]limiterShard
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter() *limiter {
	l := &limiter{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*bucket{}
	}
	return l
}

// allow takes a token from key's bucket, returning how long to wait if none.
func (l *limiter) allow(key string, r rate.Limit, burst int, now time.Time) (bool, time.Duration) {
	sh := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.swept) > time.Minute {
		for k, b := range sh.buckets {
			if now.Sub(b.seen) > time.Minute {
				delete(sh.buckets, k)
			}
		}
		sh.swept = now
	}
	b := sh.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(r, burst)}
		sh.buckets[key] = b
	}
	b.seen = now
	res := b.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// limit applies the session and address limits of action; on refusal it
// writes 429 rate_limited with Retry-After and returns false.
func (a *app) limit(w http.ResponseWriter, r *http.Request, action, fan string) bool {
	now := time.Now()
	wait := time.Duration(0)
	if a.Limits.SessionRate > 0 {
		if ok, d := a.limiter.allow("s:"+action+":"+fan, rate.Limit(a.Limits.SessionRate), a.Limits.SessionBurst, now); !ok {
			wait = d
		}
	}
	if wait == 0 && a.Limits.AddressRate > 0 {
		if ok, d := a.limiter.allow("a:"+action+":"+clientIP(r), rate.Limit(a.Limits.AddressRate), a.Limits.AddressBurst, now); !ok {
			wait = d
		}
	}
	if wait == 0 {
		return true
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	a.writeError(w, r, booking.Errorf(booking.ECodeRateLimited, "too many requests; retry in a moment"))
	return false
}

// clientIP is the request's peer address without the port. Forwarded
// headers are not trusted: put seatmap behind a proxy that rewrites them.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
