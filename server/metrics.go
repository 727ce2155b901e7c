package server

import (
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"seatmap/booking"
	"seatmap/realtime"
)

// metrics are seatmap's own Prometheus series (API.md "Operations"),
// registered on the server's registry and fed by the domain's hooks.
type metrics struct {
	reg             prometheus.Registerer
	checkouts       *prometheus.CounterVec
	checkoutSeconds prometheus.Histogram
	commitSeconds   prometheus.Histogram
	holds           *prometheus.CounterVec
	outboxLag       prometheus.Histogram
	reconciled      *prometheus.CounterVec
	admitted        prometheus.Counter
	skipped         prometheus.Counter
	positions       prometheus.Counter
	queueLength     *prometheus.GaugeVec
	admitRate       *prometheus.GaugeVec
	queueTick       prometheus.Histogram
	connections     prometheus.Gauge
	messagesSent    prometheus.Counter
	slowClosed      prometheus.Counter
	notifyLag       prometheus.Histogram
	resyncs         prometheus.Counter
	batchDeferred   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		checkouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "seatmap_checkouts_total",
			Help: "Checkout requests by outcome (ok or the error code)."}, []string{"outcome"}),
		checkoutSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "seatmap_checkout_seconds",
			Help: "Checkout request duration.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "seatmap_commit_seconds",
			Help: "Duration of the sale's SQL transaction.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		holds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "seatmap_holds_total",
			Help: "Hold requests by outcome (ok or the error code)."}, []string{"outcome"}),
		outboxLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "seatmap_outbox_lag_seconds",
			Help: "Time from an outbox row's insert to its publication in Redis.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "seatmap_reconciler_repairs_total",
			Help: "Redis state repaired from SQL by the reconciler, by kind."}, []string{"kind"}),
		admitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "seatmap_admissions_total",
			Help: "Fans admitted by this process's admitters."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "seatmap_queue_leavers_skipped_total",
			Help: "Queue places skipped because their fan left."}),
		positions: prometheus.NewCounter(prometheus.CounterOpts{Name: "seatmap_queue_positions_pushed_total",
			Help: "Queue position updates pushed to local fans."}),
		queueLength: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "seatmap_queue_length",
			Help: "Fans waiting, per event."}, []string{"event"}),
		queueTick: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "seatmap_queue_tick_seconds",
			Help:    "How long one waiting-room tick (admitter step and positions, every event) took; the admitter catches up on at most max(2 ticks, 1 s) per step.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		admitRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "seatmap_admission_rate",
			Help: "Measured admissions per second, per event."}, []string{"event"}),
	}
	m.connections = prometheus.NewGauge(prometheus.GaugeOpts{Name: "seatmap_ws_connections",
		Help: "Open fan WebSocket connections."})
	m.messagesSent = prometheus.NewCounter(prometheus.CounterOpts{Name: "seatmap_ws_messages_sent_total",
		Help: "Frames written to fan sockets."})
	m.slowClosed = prometheus.NewCounter(prometheus.CounterOpts{Name: "seatmap_ws_slow_consumer_closes_total",
		Help: "Sockets closed because they could not keep up."})
	m.notifyLag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "seatmap_seat_change_lag_seconds",
		Help: "Time from a hold's change in Redis to its batch being queued to every socket.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)})
	m.resyncs = prometheus.NewCounter(prometheus.CounterOpts{Name: "seatmap_seat_state_resyncs_total",
		Help: "Rebuilds of an event's seat state from Redis and SQL."})
	m.batchDeferred = prometheus.NewCounter(prometheus.CounterOpts{Name: "seatmap_seat_batches_deferred_total",
		Help: "Ticks whose seat changes waited for the fan-out budget (PUSH_BUDGET) and coalesced into a later batch."})
	reg.MustRegister(m.connections, m.messagesSent, m.slowClosed, m.notifyLag, m.resyncs, m.batchDeferred)
	reg.MustRegister(m.checkouts, m.checkoutSeconds, m.commitSeconds, m.holds, m.outboxLag, m.reconciled,
		m.admitted, m.skipped, m.positions, m.queueLength, m.admitRate, m.queueTick)
	return m
}

// watchInFlight exports the requests being served (sockets aside).
func (m *metrics) watchInFlight(count func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "seatmap_http_requests_in_flight",
		Help: "HTTP requests being served, WebSockets aside; the fan-out budget gives way to them."},
		func() float64 { return float64(count()) }))
}

// dbPoolCollector exports the state of the server's Postgres pools, read
// once per scrape: whether requests queue for a connection (the pools are
// small on purpose: booking.DefaultPoolSize).
type dbPoolCollector struct {
	pools                      map[string]*pgxpool.Pool // by the pool label
	max, acquired, waits, wait *prometheus.Desc
}

// watchDBPools exports pools (label pool: their name) as seatmap_db_pool_*.
func (m *metrics) watchDBPools(pools map[string]*pgxpool.Pool) {
	l := []string{"pool"}
	m.reg.MustRegister(&dbPoolCollector{pools: pools,
		max:      prometheus.NewDesc("seatmap_db_pool_max_conns", "Connections the Postgres pool opens at most.", l, nil),
		acquired: prometheus.NewDesc("seatmap_db_pool_acquired_conns", "Connections in use.", l, nil),
		waits: prometheus.NewDesc("seatmap_db_pool_empty_acquires_total",
			"Acquires that found no idle connection and waited for one to be freed or opened.", l, nil),
		wait: prometheus.NewDesc("seatmap_db_pool_empty_acquire_wait_seconds_total",
			"Time those acquires waited for a connection.", l, nil),
	})
}

func (c *dbPoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.max
	ch <- c.acquired
	ch <- c.waits
	ch <- c.wait
}

func (c *dbPoolCollector) Collect(ch chan<- prometheus.Metric) {
	for name, p := range c.pools {
		st := p.Stat()
		ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(st.MaxConns()), name)
		ch <- prometheus.MustNewConstMetric(c.acquired, prometheus.GaugeValue, float64(st.AcquiredConns()), name)
		ch <- prometheus.MustNewConstMetric(c.waits, prometheus.CounterValue, float64(st.EmptyAcquireCount()), name)
		ch <- prometheus.MustNewConstMetric(c.wait, prometheus.CounterValue, st.EmptyAcquireWaitTime().Seconds(), name)
	}
}

func (m *metrics) bookingHooks() booking.Hooks {
	return booking.Hooks{
		CheckoutDone: func(outcome string, d time.Duration) {
			m.checkouts.WithLabelValues(outcome).Inc()
			m.checkoutSeconds.Observe(d.Seconds())
		},
		CommitLatency: func(d time.Duration) { m.commitSeconds.Observe(d.Seconds()) },
		HoldDone:      func(outcome string) { m.holds.WithLabelValues(outcome).Inc() },
		RelayLag:      func(d time.Duration) { m.outboxLag.Observe(d.Seconds()) },
		Reconciled:    func(kind string, n int) { m.reconciled.WithLabelValues(kind).Add(float64(n)) },
	}
}

func (m *metrics) waitingRoomHooks() realtime.WaitingRoomHooks {
	return realtime.WaitingRoomHooks{
		Admitted:        func(n int) { m.admitted.Add(float64(n)) },
		Skipped:         func(n int) { m.skipped.Add(float64(n)) },
		PositionsPushed: func(n int) { m.positions.Add(float64(n)) },
		QueueLength:     func(eventID string, n int) { m.queueLength.WithLabelValues(eventID).Set(float64(n)) },
		AdmitRate:       func(eventID string, r float64) { m.admitRate.WithLabelValues(eventID).Set(r) },
		TickDone:        func(d time.Duration) { m.queueTick.Observe(d.Seconds()) },
	}
}

func (m *metrics) hubHooks() realtime.Hooks {
	return realtime.Hooks{
		Connections:        func(d int) { m.connections.Add(float64(d)) },
		MessagesSent:       func(n int) { m.messagesSent.Add(float64(n)) },
		SlowConsumerClosed: func() { m.slowClosed.Inc() },
		NotificationLag:    func(d time.Duration) { m.notifyLag.Observe(d.Seconds()) },
		Resync:             func() { m.resyncs.Inc() },
		BatchDeferred:      func() { m.batchDeferred.Inc() },
	}
}
