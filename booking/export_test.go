package booking

import "time"

// Test seams, compiled only into this package's tests.

// SetCrashHook makes the flows of s consult f at their named steps
// ("authorized", "committed", "relay_published", "relay_waiting" and
// "relay_woken" — their errors are ignored); a non-nil error stops the
// flow there, as if the process had died. f may also block, to hold a flow
// at a step.
func SetCrashHook(s *Service, f func(step string) error) { s.crashAt = f }

// SetRelayPoll sets how often RunRelay of s drains the outbox without
// being woken (default a second).
func SetRelayPoll(s *Service, d time.Duration) { s.relayPoll = d }

// ScopeToEvent restricts RecoverCheckouts and RelayOutbox of s to one event,
// so tests running in parallel do not finish each other's work.
func ScopeToEvent(s *Service, eventID string) { s.onlyEvent = eventID }

// CatalogReads is how many catalogs s has read from SQL.
func CatalogReads(s *Service) int64 { return s.catalogReads.Load() }

// ExecLazy is execLazy: one statement committed without waiting for the
// WAL flush.
var ExecLazy = execLazy

// SaleSQL is saleSQL: the sale's version-checked UPDATE and its order
// items' INSERT for some seats, with their arguments.
var SaleSQL = saleSQL

// FanBoughtSQL is the sale's count of the seats a fan bought in an event.
const FanBoughtSQL = fanBoughtSQL
