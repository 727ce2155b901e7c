package loadtest

import (
	"fmt"
	"io"
	"maps"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// stats is what one process observed. Counters are atomic and histograms
// lock-free, so every fan goroutine records directly.
type stats struct {
	fans          atomic.Int64 // fans started
	connected     atomic.Int64 // sockets open now
	admitted      atomic.Int64
	holdsOK       atomic.Int64
	holdsConflict atomic.Int64
	releases      atomic.Int64
	orders        atomic.Int64
	declined      atomic.Int64
	seatsSold     atomic.Int64
	errTotal      atomic.Int64
	firstOp       atomic.Int64 // UnixNano of the first hold/checkout attempt
	lastOp        atomic.Int64 // UnixNano of the last hold/checkout answer
	firstAdmit    atomic.Int64 // UnixNano of the first admission seen
	lastAdmit     atomic.Int64 // UnixNano of the last admission seen

	srvFans [maxServers]atomic.Int64 // fans started per server (index into --url)

	errMu  sync.Mutex
	errors map[string]int64

	joinToAdmitted histogram
	hold           histogram
	checkout       histogram
	delivered      histogram

	ledger *ledger
	probe  *probe // nil until the venue is known

	extraProbe int64 // probe changes of merged workers (coordinator only)
}

func newStats() *stats {
	return &stats{errors: map[string]int64{}, ledger: newLedger()}
}

// fail counts an error by code; "" (no error, or the run is over) is ignored.
func (s *stats) fail(code string) {
	if code == "" {
		return
	}
	s.errTotal.Add(1)
	s.errMu.Lock()
	s.errors[code]++
	s.errMu.Unlock()
}

// errorCounts returns a copy of the failures by code.
func (s *stats) errorCounts() map[string]int64 {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return maps.Clone(s.errors)
}

// opStart notes an attempt (for the throughput window); opEnd its answer.
func (s *stats) opStart(t time.Time) { storeMin(&s.firstOp, t.UnixNano()) }
func (s *stats) opEnd(t time.Time)   { storeMax(&s.lastOp, t.UnixNano()) }

// admit counts a fan's admission, seen at t (for the admission window).
func (s *stats) admit(t time.Time) {
	s.admitted.Add(1)
	s.admitWindow(t.UnixNano(), t.UnixNano())
}

func (s *stats) admitWindow(first, last int64) {
	if first != 0 {
		storeMin(&s.firstAdmit, first)
	}
	if last != 0 {
		storeMax(&s.lastAdmit, last)
	}
}

// fanOn counts a fan started on server srv.
func (s *stats) fanOn(srv int) {
	if srv >= 0 && srv < maxServers {
		s.srvFans[srv].Add(1)
	}
}

// storeMin lowers a (0: unset) to n; storeMax raises a to n.
func storeMin(a *atomic.Int64, n int64) {
	for {
		f := a.Load()
		if (f != 0 && f <= n) || a.CompareAndSwap(f, n) {
			return
		}
	}
}

func storeMax(a *atomic.Int64, n int64) {
	for {
		l := a.Load()
		if l >= n || a.CompareAndSwap(l, n) {
			return
		}
	}
}

// progress is a once-a-second reading of the counters (also what a worker
// process sends to the coordinator every second).
type progress struct {
	Fans      int64 `json:"fans"`
	Connected int64 `json:"connected"`
	Admitted  int64 `json:"admitted"`
	HoldsOK   int64 `json:"holds_ok"`
	Orders    int64 `json:"orders"`
	SeatsSold int64 `json:"seats_sold"`
	Errors    int64 `json:"errors"`
}

func (s *stats) progress() progress {
	return progress{
		Fans: s.fans.Load(), Connected: s.connected.Load(), Admitted: s.admitted.Load(),
		HoldsOK: s.holdsOK.Load(), Orders: s.orders.Load(), SeatsSold: s.seatsSold.Load(), Errors: s.errTotal.Load(),
	}
}

func (p progress) add(q progress) progress {
	return progress{
		Fans: p.Fans + q.Fans, Connected: p.Connected + q.Connected, Admitted: p.Admitted + q.Admitted,
		HoldsOK: p.HoldsOK + q.HoldsOK, Orders: p.Orders + q.Orders, SeatsSold: p.SeatsSold + q.SeatsSold,
		Errors: p.Errors + q.Errors,
	}
}

// progressLine formats one progress line; errRate is errors in the last second.
func progressLine(elapsed time.Duration, p progress, errRate int64) string {
	return fmt.Sprintf("loadtest %5.0fs  fans %d  connected %d  admitted %d  holds %d  orders %d  sold %d  errors/s %d",
		elapsed.Seconds(), p.Fans, p.Connected, p.Admitted, p.HoldsOK, p.Orders, p.SeatsSold, errRate)
}

// partial is everything one process observed, as a worker hands it to the
// coordinator at the end.
type partial struct {
	Fans          int64               `json:"fans"`
	Admitted      int64               `json:"admitted"`
	HoldsOK       int64               `json:"holds_ok"`
	HoldsConflict int64               `json:"holds_conflict"`
	Releases      int64               `json:"releases"`
	Orders        int64               `json:"orders"`
	Declined      int64               `json:"declined"`
	SeatsSold     int64               `json:"seats_sold"`
	Errors        map[string]int64    `json:"errors"`
	FirstOp       int64               `json:"first_op"`
	LastOp        int64               `json:"last_op"`
	FirstAdmit    int64               `json:"first_admit"`
	LastAdmit     int64               `json:"last_admit"`
	ServerFans    []int64             `json:"server_fans"`
	ProbeChanges  int64               `json:"probe_changes"`
	Hists         map[string]histData `json:"hists"`
	OrderList     []orderRec          `json:"orders_list"`
}

// Histogram names, as the report's latency_ms keys.
const (
	latJoin      = "join_to_admitted"
	latHold      = "hold"
	latCheckout  = "checkout"
	latDelivered = "change_to_delivered"
)

func (s *stats) hists() map[string]*histogram {
	return map[string]*histogram{latJoin: &s.joinToAdmitted, latHold: &s.hold, latCheckout: &s.checkout, latDelivered: &s.delivered}
}

// partial exports s.
func (s *stats) partial() partial {
	p := partial{
		Fans: s.fans.Load(), Admitted: s.admitted.Load(), HoldsOK: s.holdsOK.Load(), HoldsConflict: s.holdsConflict.Load(),
		Releases: s.releases.Load(), Orders: s.orders.Load(), Declined: s.declined.Load(), SeatsSold: s.seatsSold.Load(),
		Errors: s.errorCounts(), FirstOp: s.firstOp.Load(), LastOp: s.lastOp.Load(),
		FirstAdmit: s.firstAdmit.Load(), LastAdmit: s.lastAdmit.Load(), ServerFans: s.serverFans(),
		Hists: map[string]histData{}, OrderList: s.ledger.records(),
	}
	if s.probe != nil {
		p.ProbeChanges = s.probe.changes.Load()
	}
	for name, h := range s.hists() {
		p.Hists[name] = h.data()
	}
	return p
}

// merge adds a worker's partial into s (the coordinator's totals).
func (s *stats) merge(p partial) {
	s.fans.Add(p.Fans)
	s.admitted.Add(p.Admitted)
	s.holdsOK.Add(p.HoldsOK)
	s.holdsConflict.Add(p.HoldsConflict)
	s.releases.Add(p.Releases)
	s.orders.Add(p.Orders)
	s.declined.Add(p.Declined)
	s.seatsSold.Add(p.SeatsSold)
	for k, v := range p.Errors {
		s.errMu.Lock()
		s.errors[k] += v
		s.errMu.Unlock()
		s.errTotal.Add(v)
	}
	if p.FirstOp != 0 {
		s.opStart(time.Unix(0, p.FirstOp))
	}
	if p.LastOp != 0 {
		s.opEnd(time.Unix(0, p.LastOp))
	}
	s.admitWindow(p.FirstAdmit, p.LastAdmit)
	for i, n := range p.ServerFans {
		if i < maxServers {
			s.srvFans[i].Add(n)
		}
	}
	hs := s.hists()
	for name, d := range p.Hists {
		if h, ok := hs[name]; ok {
			h.merge(d)
		}
	}
	for _, o := range p.OrderList {
		s.ledger.add(o.ID, o.Seats, o.At)
	}
	s.extraProbe += p.ProbeChanges
}

// serverFans returns the fans started per server, up to the last server
// that has any.
func (s *stats) serverFans() []int64 {
	var out []int64
	for i := range s.srvFans {
		if n := s.srvFans[i].Load(); n != 0 {
			for len(out) < i {
				out = append(out, 0)
			}
			out = append(out, n)
		}
	}
	return out
}

// Report is the result of a run; with --json it is printed as one object.
type Report struct {
	Scenario       string             `json:"scenario"`
	URL            string             `json:"url"`
	Event          string             `json:"event"`
	Procs          int                `json:"procs"`
	ElapsedS       float64            `json:"elapsed_s"`
	Fans           int64              `json:"fans"`
	ConnectedPeak  int64              `json:"connected_peak"`
	Admitted       int64              `json:"admitted"`
	AdmittedPerS   float64            `json:"admitted_per_s"`
	HoldsOK        int64              `json:"holds_ok"`
	HoldsConflict  int64              `json:"holds_conflict"`
	Releases       int64              `json:"releases"`
	Orders         int64              `json:"orders"`
	Declined       int64              `json:"declined"`
	SeatsSold      int64              `json:"seats_sold"`
	SeatsTotal     int                `json:"seats_total"`
	SoldOut        bool               `json:"sold_out"`
	SoldOutS       *float64           `json:"sold_out_s"`
	DoubleSold     int                `json:"double_sold"`
	DoubleSoldList []string           `json:"double_sold_seats"`
	Errors         map[string]int64   `json:"errors"`
	HoldsPerS      float64            `json:"holds_per_s"`
	CheckoutsPerS  float64            `json:"checkouts_per_s"`
	ProbeChanges   int64              `json:"probe_changes"`
	Latency        map[string]latency `json:"latency_ms"`
	// The map check (drop, idle): fans' live maps compared with the truth
	// after the run; the truth snapshot itself is counted as one more map.
	MapsChecked  int64    `json:"maps_checked"`
	MapsDiverged int64    `json:"maps_diverged"`
	MapsExamples []string `json:"maps_diverged_examples"`
	MapsTruth    string   `json:"maps_truth"`       // what the truth was
	MapsError    string   `json:"maps_check_error"` // why the check could not run ("" if it did or does not apply)
	// Server figures from /proc/<--server-pid>; null without --server-pid.
	// With several servers they are sums over the servers (RSS: the sum of
	// each one's peak), and Servers has each one's.
	ServerRSSBytes        *uint64        `json:"server_rss_bytes"`
	ServerRSSBaseBytes    *uint64        `json:"server_rss_base_bytes"`
	ServerRSSPerConnBytes *uint64        `json:"server_rss_per_conn_bytes"`
	ServerCPUSeconds      *float64       `json:"server_cpu_seconds"`
	Servers               []serverReport `json:"servers"`
}

// serverReport is one server of --url: its fans, their maps and, with
// --server-pid, its resources.
type serverReport struct {
	URL          string   `json:"url"`
	PID          *int     `json:"pid"`
	Fans         int64    `json:"fans"`
	MapsChecked  int64    `json:"maps_checked"`
	MapsDiverged int64    `json:"maps_diverged"`
	RSSBytes     *uint64  `json:"rss_bytes"`      // peak during the run
	RSSBaseBytes *uint64  `json:"rss_base_bytes"` // before the run
	CPUSeconds   *float64 `json:"cpu_seconds"`    // user + system during the run
}

// report builds the Report from the merged stats.
func (s *stats) report() Report {
	r := Report{
		Fans: s.fans.Load(), Admitted: s.admitted.Load(), HoldsOK: s.holdsOK.Load(), HoldsConflict: s.holdsConflict.Load(),
		Releases: s.releases.Load(), Orders: s.orders.Load(), Declined: s.declined.Load(), SeatsSold: s.seatsSold.Load(),
		Errors: s.errorCounts(), Latency: map[string]latency{}, MapsExamples: []string{}, Servers: []serverReport{},
	}
	r.DoubleSoldList = s.ledger.doubleSold()
	r.DoubleSold = len(r.DoubleSoldList)
	for name, h := range s.hists() {
		r.Latency[name] = h.summary()
	}
	if f, l := s.firstAdmit.Load(), s.lastAdmit.Load(); f != 0 && l > f {
		r.AdmittedPerS = round3(float64(r.Admitted) / time.Duration(l-f).Seconds())
	}
	if f, l := s.firstOp.Load(), s.lastOp.Load(); f != 0 && l > f {
		win := time.Duration(l - f).Seconds()
		r.HoldsPerS = round3(float64(r.HoldsOK+r.HoldsConflict) / win)
		r.CheckoutsPerS = round3(float64(r.Orders) / win)
	}
	r.ProbeChanges = s.extraProbe
	if s.probe != nil {
		r.ProbeChanges += s.probe.changes.Load()
	}
	return r
}

// writeSummary prints the human summary of r.
func writeSummary(w io.Writer, r *Report) {
	fmt.Fprintf(w, "seatmap loadtest: scenario %s, event %s at %s, %.1f s, %d process(es)\n",
		r.Scenario, r.Event, r.URL, r.ElapsedS, r.Procs)
	adm := fmt.Sprintf("  fans %d, connected peak %d, admitted %d", r.Fans, r.ConnectedPeak, r.Admitted)
	if r.AdmittedPerS > 0 {
		adm += fmt.Sprintf(" (%.1f/s from the first admission to the last)", r.AdmittedPerS)
	}
	fmt.Fprintln(w, adm)
	fmt.Fprintf(w, "  holds %d ok, %d conflict, %d released; orders %d (%d payments declined first)\n",
		r.HoldsOK, r.HoldsConflict, r.Releases, r.Orders, r.Declined)
	sold := fmt.Sprintf("  seats sold %d of %d", r.SeatsSold, r.SeatsTotal)
	if r.SoldOut && r.SoldOutS != nil {
		sold += fmt.Sprintf(", sold out after %.1f s", *r.SoldOutS)
	}
	fmt.Fprintf(w, "%s; double sold %d\n", sold, r.DoubleSold)
	if r.DoubleSold > 0 {
		fmt.Fprintf(w, "  DOUBLE SOLD SEATS: %s\n", strings.Join(r.DoubleSoldList, " "))
	}
	fmt.Fprintf(w, "  throughput: %.1f holds/s, %.1f checkouts/s\n", r.HoldsPerS, r.CheckoutsPerS)
	fmt.Fprintf(w, "  %-20s %8s %10s %10s %10s\n", "latency (ms)", "count", "p50", "p99", "max")
	for _, name := range []string{latJoin, latHold, latCheckout, latDelivered} {
		l := r.Latency[name]
		fmt.Fprintf(w, "  %-20s %8d %10.2f %10.2f %10.2f\n", name, l.Count, l.P50, l.P99, l.Max)
	}
	if r.ProbeChanges > 0 {
		fmt.Fprintf(w, "  probe seat changes: %d\n", r.ProbeChanges)
	}
	if len(r.Errors) == 0 {
		fmt.Fprintln(w, "  errors: none")
	} else {
		codes := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			codes = append(codes, k)
		}
		sort.Strings(codes)
		parts := make([]string, len(codes))
		for i, k := range codes {
			parts[i] = fmt.Sprintf("%s=%d", k, r.Errors[k])
		}
		fmt.Fprintf(w, "  errors: %s\n", strings.Join(parts, " "))
	}
	switch {
	case r.MapsError != "":
		fmt.Fprintf(w, "  maps: NOT CHECKED: %s\n", r.MapsError)
	case r.MapsChecked > 0 || r.MapsDiverged > 0:
		fmt.Fprintf(w, "  maps: %d checked against the truth, %d diverged\n", r.MapsChecked, r.MapsDiverged)
	}
	if r.MapsTruth != "" {
		fmt.Fprintf(w, "  truth: %s\n", r.MapsTruth)
	}
	for _, ex := range r.MapsExamples {
		fmt.Fprintf(w, "  DIVERGED: %s\n", ex)
	}
	if len(r.Servers) > 1 || (len(r.Servers) == 1 && r.Servers[0].PID != nil) {
		for _, sv := range r.Servers {
			line := fmt.Sprintf("  %s:", sv.URL)
			if sv.PID != nil {
				line += fmt.Sprintf(" pid %d,", *sv.PID)
			}
			line += fmt.Sprintf(" fans %d, maps %d checked / %d diverged", sv.Fans, sv.MapsChecked, sv.MapsDiverged)
			if sv.RSSBytes != nil && sv.RSSBaseBytes != nil && sv.CPUSeconds != nil {
				line += fmt.Sprintf("; peak RSS %s (%s before), CPU %.2f s", mib(*sv.RSSBytes), mib(*sv.RSSBaseBytes), *sv.CPUSeconds)
			}
			fmt.Fprintln(w, line)
		}
	}
	if r.ServerRSSBytes != nil {
		who := "server"
		if len(r.Servers) > 1 {
			who = fmt.Sprintf("servers (sum of %d)", len(r.Servers))
		}
		line := fmt.Sprintf("  %s: peak RSS %s", who, mib(*r.ServerRSSBytes))
		if r.ServerRSSBaseBytes != nil {
			line += fmt.Sprintf(" (%s before the run)", mib(*r.ServerRSSBaseBytes))
		}
		if r.ServerRSSPerConnBytes != nil {
			line += fmt.Sprintf(", %.1f KiB per connection", float64(*r.ServerRSSPerConnBytes)/1024)
		}
		if r.ServerCPUSeconds != nil {
			line += fmt.Sprintf(", CPU %.2f s (%.0f %% of one core)", *r.ServerCPUSeconds, 100**r.ServerCPUSeconds/math.Max(r.ElapsedS, 1e-9))
		}
		fmt.Fprintln(w, line)
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
