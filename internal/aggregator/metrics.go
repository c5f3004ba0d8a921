package aggregator

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetsource/jetsource/internal/es"
)

// Metrics is the Prometheus Observer of the aggregator.
type Metrics struct {
	commands        *prometheus.CounterVec
	commandDuration *prometheus.HistogramVec
	appendDuration  prometheus.Histogram
	appendErrors    *prometheus.CounterVec
	retries         prometheus.Counter
	cache           *prometheus.CounterVec
	partitions      prometheus.Gauge
	snapshots       *prometheus.CounterVec
	untyped         prometheus.Counter
	settled         *prometheus.CounterVec
	purges          prometheus.Counter
}

// NewMetrics registers the aggregator's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	m := &Metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetsource_aggregator_commands_total",
			Help: "Commands handled, by command type, status (accepted, rejected), error code, and whether an earlier outcome was replayed.",
		}, []string{"type", "status", "code", "replayed"}),
		commandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "jetsource_aggregator_command_duration_seconds",
			Help:    "Time from receiving a command to its result being stored.",
			Buckets: buckets,
		}, []string{"status"}),
		appendDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "jetsource_aggregator_append_duration_seconds",
			Help:    "Time of one conditional append to the event store, successful or not.",
			Buckets: buckets,
		}),
		appendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetsource_aggregator_append_errors_total",
			Help: "Failed appends: conflict (another append won), unknown (outcome unknown, verified by reload), other.",
		}, []string{"kind"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetsource_aggregator_retries_total",
			Help: "Reloads and new decisions after a conflict or an append of unknown outcome.",
		}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetsource_aggregator_cache_lookups_total",
			Help: "Order loads by result: hit (from memory) or miss (from snapshot and events). Hit ratio = hit / (hit + miss).",
		}, []string{"result"}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jetsource_aggregator_partitions_owned",
			Help: "Command partitions this replica runs.",
		}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetsource_aggregator_snapshots_ignored_total",
			Help: "Snapshots a load did not use, by reason: unreadable, other_schema, undecodable, ahead (covers events the stream does not have), inconsistent (the events after it do not continue it).",
		}, []string{"reason"}),
		untyped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetsource_aggregator_commands_untyped_total",
			Help: "Messages published on orders.commands.<orderId> without the command type token: no stream stores them; the aggregator answers a request with an error.",
		}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetsource_aggregator_commands_settled_total",
			Help: "Handled commands taken off ORDERS_COMMANDS, by how: purge (a run of them in one purge) or ack (one by one, after a purge failed).",
		}, []string{"by"}),
		purges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jetsource_aggregator_settle_purges_total",
			Help: "Purges of handled commands off ORDERS_COMMANDS; commands settled by purge divided by this is the mean run.",
		}),
	}
	reg.MustRegister(m.commands, m.commandDuration, m.appendDuration, m.appendErrors, m.retries, m.cache, m.partitions, m.snapshots, m.untyped,
		m.settled, m.purges)
	for _, kind := range []string{"conflict", "unknown", "other"} {
		m.appendErrors.WithLabelValues(kind)
	}
	for _, reason := range []string{es.SnapshotUnreadable, es.SnapshotOtherSchema, es.SnapshotUndecodable, es.SnapshotAhead, es.SnapshotInconsistent} {
		m.snapshots.WithLabelValues(reason)
	}
	m.settled.WithLabelValues("purge")
	m.settled.WithLabelValues("ack")
	m.cache.WithLabelValues("hit")
	m.cache.WithLabelValues("miss")
	return m
}

// CommandHandled implements Observer.
func (m *Metrics) CommandHandled(commandType, status, code string, replayed bool, d time.Duration) {
	r := "false"
	if replayed {
		r = "true"
	}
	m.commands.WithLabelValues(commandType, status, code, r).Inc()
	m.commandDuration.WithLabelValues(status).Observe(d.Seconds())
}

// CacheLookup implements Observer.
func (m *Metrics) CacheLookup(hit bool) {
	if hit {
		m.cache.WithLabelValues("hit").Inc()
	} else {
		m.cache.WithLabelValues("miss").Inc()
	}
}

// Append implements Observer.
func (m *Metrics) Append(d time.Duration, err error) {
	m.appendDuration.Observe(d.Seconds())
	switch {
	case err == nil:
	case errors.Is(err, es.ErrConflict):
		m.appendErrors.WithLabelValues("conflict").Inc()
	case errors.Is(err, es.ErrUnknownOutcome):
		m.appendErrors.WithLabelValues("unknown").Inc()
	default:
		m.appendErrors.WithLabelValues("other").Inc()
	}
}

// Retry implements Observer.
func (m *Metrics) Retry() { m.retries.Inc() }

// Partition implements Observer.
func (m *Metrics) Partition(_ int, owned bool) {
	if owned {
		m.partitions.Inc()
	} else {
		m.partitions.Dec()
	}
}

// SnapshotIgnored implements Observer.
func (m *Metrics) SnapshotIgnored(reason string) { m.snapshots.WithLabelValues(reason).Inc() }

// UntypedCommand implements Observer.
func (m *Metrics) UntypedCommand() { m.untyped.Inc() }

// Settled implements Observer.
func (m *Metrics) Settled(commands int, byPurge bool) {
	if byPurge {
		m.purges.Inc()
		m.settled.WithLabelValues("purge").Add(float64(commands))
		return
	}
	m.settled.WithLabelValues("ack").Add(float64(commands))
}
