//go:build faults

package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// outcome is what a client learned of one operation (Jepsen's :ok, :fail,
// :info): ok — it took effect; fail — it certainly did not; unknown — it
// may or may not have (timeout, reset, 503 from a backend outage, a
// checkout still in progress).
type outcome string

const (
	outcomeOK      outcome = "ok"
	outcomeFail    outcome = "fail"
	outcomeUnknown outcome = "unknown"
	outcomePending outcome = "" // invoked, not completed
)

// op is one client operation: its invocation and completion.
type op struct {
	ID       int       `json:"id"`
	Fan      int       `json:"fan"`
	Kind     string    `json:"kind"` // join, hold, checkout
	Server   string    `json:"server"`
	Key      string    `json:"key,omitempty"`   // checkout Idempotency-Key
	Card     string    `json:"card,omitempty"`  // checkout card
	Seats    []string  `json:"seats,omitempty"` // hold: asked; checkout ok: bought
	Invoke   time.Time `json:"invoke"`
	Complete time.Time `json:"complete"`
	Outcome  outcome   `json:"outcome"`
	Status   int       `json:"status,omitempty"`
	Code     string    `json:"code,omitempty"` // error code, or refused/timeout/network
	OrderID  string    `json:"order_id,omitempty"`
	Total    int64     `json:"total_cents,omitempty"`
	Final    bool      `json:"final,omitempty"` // part of the resolution pass after the faults
}

// history records every operation of a scenario. Safe for concurrent use.
type history struct {
	mu  sync.Mutex
	ops []*op
}

// invoke records the start of an operation; the caller fills in the
// result and calls complete.
func (h *history) invoke(fan int, kind, server string) *op {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := &op{ID: len(h.ops), Fan: fan, Kind: kind, Server: server, Invoke: time.Now()}
	h.ops = append(h.ops, o)
	return o
}

// complete records the end of o with its outcome.
func (h *history) complete(o *op, out outcome) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o.Complete = time.Now()
	o.Outcome = out
}

// snapshot returns a copy of every operation, in invocation order.
func (h *history) snapshot() []op {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]op, len(h.ops))
	for i, o := range h.ops {
		out[i] = *o
	}
	return out
}

// counts returns "kind/outcome" → number of operations.
func (h *history) counts() map[string]int {
	m := map[string]int{}
	for _, o := range h.snapshot() {
		out := o.Outcome
		if out == outcomePending {
			out = "pending"
		}
		m[o.Kind+"/"+string(out)]++
	}
	return m
}

// len returns the number of operations.
func (h *history) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// keyState is everything the history says about one checkout key.
type keyState struct {
	Key      string
	Fan      int
	Card     string
	Ops      []op
	OrderIDs map[string]bool // order ids of ok answers
	Consumed []string        // fail codes that say the key's checkout ended without a sale
	Unknown  int
	Last     outcome // outcome of the last completed op
}

// consumingFail reports whether a checkout error code is a final answer
// about the key (stored and replayed), as opposed to a refusal before the
// checkout began (not_admitted, rate_limited, bad_request) or an
// indeterminate one (unavailable, idempotency_conflict "in progress",
// network). seat_limit is final too: the sale transaction refuses a fan
// over MAX_SEATS_PER_FAN (after a flush Redis no longer knows what the fan
// bought) and voids the authorization.
func consumingFail(code string) bool {
	switch code {
	case "hold_lost", "payment_declined", "seat_limit":
		return true
	}
	return false
}

// keys groups the checkout operations by key.
func (h *history) keys() map[string]*keyState {
	ks := map[string]*keyState{}
	for _, o := range h.snapshot() {
		if o.Kind != "checkout" {
			continue
		}
		k := ks[o.Key]
		if k == nil {
			k = &keyState{Key: o.Key, Fan: o.Fan, Card: o.Card, OrderIDs: map[string]bool{}}
			ks[o.Key] = k
		}
		k.Ops = append(k.Ops, o)
		switch o.Outcome {
		case outcomeOK:
			k.OrderIDs[o.OrderID] = true
		case outcomeFail:
			if consumingFail(o.Code) {
				k.Consumed = append(k.Consumed, o.Code)
			}
		case outcomeUnknown:
			k.Unknown++
		}
		if o.Outcome != outcomePending {
			k.Last = o.Outcome
		}
	}
	return ks
}

// unresolved returns the keys whose operations never gave a definite
// answer (no ok, no final fail): their outcome must be looked up by
// retrying the same key.
func (h *history) unresolved() []*keyState {
	var out []*keyState
	for _, k := range h.keys() {
		if len(k.OrderIDs) == 0 && len(k.Consumed) == 0 && k.lastDefinite() == "" {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// lastDefinite returns the code of a definite non-consuming answer that
// ends the key's story: a stored `unavailable` replayed while the servers
// were ready (see resolveKey), else "".
func (k *keyState) lastDefinite() string {
	for _, o := range k.Ops {
		if o.Outcome == outcomeFail && o.Code == "unavailable_stored" {
			return o.Code
		}
	}
	return ""
}

// write saves the history as JSON lines under the suite's output
// directory (FAULTS_OUT, default the system temp dir) and returns the path.
func (h *history) write(name string) string {
	path := filepath.Join(outDir(), nonWord.ReplaceAllString(name, "_")+".history.jsonl")
	f, err := os.Create(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, o := range h.snapshot() {
		enc.Encode(o)
	}
	w.Flush()
	return path
}

// outDir is where histories (and, for failed scenarios, server logs) are
// kept: FAULTS_OUT, default $TMPDIR/seatmap-faults-out.
func outDir() string {
	dir := os.Getenv("FAULTS_OUT")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "seatmap-faults-out")
	}
	os.MkdirAll(dir, 0o755)
	return dir
}

// describeCounts renders counts as "checkout/ok=12 checkout/fail=3 ...".
func describeCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}
