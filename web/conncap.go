package web

import (
	"sync"

	"seatmap/booking"
)

// errTooManyConnections refuses a socket beyond the per-address cap.
var errTooManyConnections = booking.Errorf(booking.ECodeRateLimited, "too many open connections from your address")

// connCap limits open sockets per client address (0 = no limit), so one
// machine cannot exhaust the process's file descriptors.
type connCap struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

// acquire counts a socket of addr, returning its release func, or false if
// addr is at the cap.
func (c *connCap) acquire(addr string) (func(), bool) {
	if c.max <= 0 {
		return func() {}, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[addr] >= c.max {
		return nil, false
	}
	c.open[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.open[addr]--; c.open[addr] <= 0 {
				delete(c.open, addr)
			}
		})
	}, true
}
