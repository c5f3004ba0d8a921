package projections

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the Prometheus Observer of a runner, plus a collector that
// reads the projection's lag and open dead letters at scrape time.
type Metrics struct {
	events        *prometheus.CounterVec
	batchSize     prometheus.Histogram
	batchDuration prometheus.Histogram
	owned         prometheus.Gauge
}

// NewMetrics registers the series of one projection with reg. Lag and dead
// letters describe the projection, not the replica: every replica reports
// the same figures, so aggregate them with max().
func NewMetrics(reg prometheus.Registerer, admin *Admin, projection string, log *slog.Logger) *Metrics {
	labels := prometheus.Labels{"projection": projection}
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "jetsource_projection_events_total",
			Help:        "Events the projection moved its cursor over, by outcome: applied, parked (behind a failed event of the order) or dead_lettered.",
			ConstLabels: labels,
		}, []string{"outcome"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "jetsource_projection_batch_size",
			Help:        "Events per committed batch.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(1, 2, 13),
		}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "jetsource_projection_batch_duration_seconds",
			Help:        "Time from a batch's first event arriving to its commit.",
			ConstLabels: labels,
			Buckets:     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "jetsource_projection_partitions_owned",
			Help:        "Event partitions this replica projects.",
			ConstLabels: labels,
		}),
	}
	for _, outcome := range []string{"applied", "parked", "dead_lettered"} {
		m.events.WithLabelValues(outcome)
	}
	reg.MustRegister(m.events, m.batchSize, m.batchDuration, m.owned,
		newStateCollector(admin, projection, log))
	return m
}

// BatchCommitted implements Observer.
func (m *Metrics) BatchCommitted(s BatchStats) {
	m.events.WithLabelValues("applied").Add(float64(s.Applied))
	m.events.WithLabelValues("parked").Add(float64(s.Parked))
	m.events.WithLabelValues("dead_lettered").Add(float64(s.DeadLettered))
	m.batchSize.Observe(float64(s.Events))
	m.batchDuration.Observe(s.Duration.Seconds())
}

// OwnershipChanged implements Observer.
func (m *Metrics) OwnershipChanged(_ string, partitions []int) { m.owned.Set(float64(len(partitions))) }

// stateCollector asks Postgres and NATS at scrape time, so the figures are
// current even for partitions no replica runs.
type stateCollector struct {
	admin      *Admin
	projection string
	log        *slog.Logger

	lagEvents, lagSeconds, cursor, cursorLost, deadLetters *prometheus.Desc
}

func newStateCollector(admin *Admin, projection string, log *slog.Logger) *stateCollector {
	partition := []string{"projection", "partition"}
	return &stateCollector{
		admin: admin, projection: projection, log: log,
		lagEvents: prometheus.NewDesc("jetsource_projection_lag_events",
			"Stored events of the partition the projection has not projected yet.", partition, nil),
		lagSeconds: prometheus.NewDesc("jetsource_projection_lag_seconds",
			"Age of the oldest event of the partition not projected yet; 0 when caught up.", partition, nil),
		cursor: prometheus.NewDesc("jetsource_projection_cursor",
			"Stream sequence of the last event the partition projected.", partition, nil),
		cursorLost: prometheus.NewDesc("jetsource_projection_cursor_lost",
			"1 when the events stream no longer holds the event at the partition's cursor (it ends below it, or holds another "+
				"event there: a lost tail, a restored older backup, a recreated stream); the projection has stopped until rebuilt.",
			partition, nil),
		deadLetters: prometheus.NewDesc("jetsource_projection_dead_letters",
			"Open dead letters: failed events, and events parked behind them.", []string{"projection", "status"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lagEvents
	ch <- c.lagSeconds
	ch <- c.cursor
	ch <- c.cursorLost
	ch <- c.deadLetters
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lags, err := c.admin.Lag(ctx, c.projection)
	if err != nil {
		c.log.Warn("lag for metrics", "error", err)
	}
	for _, l := range lags {
		p := strconv.Itoa(l.Partition)
		ch <- prometheus.MustNewConstMetric(c.lagEvents, prometheus.GaugeValue, float64(l.EventsBehind), c.projection, p)
		ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, l.SecondsBehind, c.projection, p)
		ch <- prometheus.MustNewConstMetric(c.cursor, prometheus.GaugeValue, float64(l.Cursor), c.projection, p)
		lost := 0.0
		if l.Loss != nil {
			lost = 1
		}
		ch <- prometheus.MustNewConstMetric(c.cursorLost, prometheus.GaugeValue, lost, c.projection, p)
	}
	open, err := c.admin.OpenDeadLetters(ctx, c.projection)
	if err != nil {
		c.log.Warn("dead letters for metrics", "error", err)
		return
	}
	for _, s := range []DeadLetterStatus{StatusFailed, StatusParked} {
		ch <- prometheus.MustNewConstMetric(c.deadLetters, prometheus.GaugeValue, float64(open[s]), c.projection, string(s))
	}
}

// OpenDeadLetters counts a projection's failed and parked dead letters.
func (a *Admin) OpenDeadLetters(ctx context.Context, projection string) (map[DeadLetterStatus]int, error) {
	rows, err := a.pool.Query(ctx, `SELECT status, count(*) FROM `+a.schema()+`.projection_dead_letters
		WHERE projection = $1 AND status IN ('failed', 'parked') GROUP BY status`, projection)
	if err != nil {
		return nil, fmt.Errorf("count dead letters of %s: %w", projection, err)
	}
	defer rows.Close()
	out := map[DeadLetterStatus]int{}
	for rows.Next() {
		var (
			status string
			n      int
		)
		if err := rows.Scan(&status, &n); err != nil {
			return nil, fmt.Errorf("count dead letters of %s: %w", projection, err)
		}
		out[DeadLetterStatus(status)] = n
	}
	return out, rows.Err()
}
