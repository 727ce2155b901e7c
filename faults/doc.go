// Package faults is seatmap's fault-injection suite (issue 8, "Fault suite"):
// Jepsen-style tests that drive real `seatmap serve` processes with many
// simulated fans, record every client operation as invoke → ok / fail /
// unknown, inject real faults (kill -9, SIGSTOP, Redis restart and FLUSHALL,
// Postgres immediate restart, network latency, resets and blackholes through
// Proxy, slow payments, pub/sub kills, sockets that never read) and then
// check the invariants against Postgres and the payment sandbox's table.
//
// The tests carry the build tag `faults` and start their own Postgres and
// Redis (a fresh temporary directory and free ports per scenario), so they
// never touch the services of `make test` or `make run`:
//
//	go test -tags faults -count=1 -timeout 15m ./faults/            # short suite
//	FAULTS_LONG=1 go test -tags faults -count=1 -timeout 60m ./faults/ # long suite
//
// Without the tag this package holds only Proxy, the small TCP fault proxy
// the tests put between the servers and Redis and Postgres. docs/RELIABILITY.md
// lists every scenario, what it promises and how it is checked.
package faults
