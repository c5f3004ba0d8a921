// Package aggregator is the command side of JetSource: it consumes the
// command partitions, decides with the order domain, appends the events and
// publishes one result per command.
package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/backoff"
	"github.com/jetsource/jetsource/internal/config"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/order"
	"github.com/jetsource/jetsource/internal/tracing"
)

// Config tunes a Service. DefaultConfig is the home of its defaults; a
// zero count switches its feature off.
type Config struct {
	// Partitions is the partition count the streams were created with.
	Partitions int
	// MaxRetries bounds reloads after conflicts for one command before it
	// is rejected with "conflict"; 0 for no retries.
	MaxRetries int
	// CacheSize is how many orders stay in memory; 0 for no cache.
	CacheSize int
	// SnapshotEvery takes a snapshot every this many events of an order;
	// 0 for no snapshots.
	SnapshotEvery int64
	// AckWait is how long JetStream waits for an acknowledgement before it
	// redelivers a command.
	AckWait time.Duration
	// MaxAckPending bounds the commands of one partition delivered to the
	// aggregator and not settled yet. Half of it bounds a run of handled
	// commands kept for one purge (see settler): a deep backlog is settled
	// in long runs, since each purge costs the servers about as much as the
	// backlog is long.
	MaxAckPending int
	// MaxInFlight bounds the commands of one partition handled at once.
	// Commands of different orders are handled concurrently; those of one
	// order always one at a time, in stream order. 1 handles a partition's
	// commands one at a time. No more than MaxAckPending are delivered.
	MaxInFlight int
	// DrainTimeout bounds finishing the commands in hand at shutdown.
	DrainTimeout time.Duration
	// ReplicaID names this replica among the aggregators sharing the
	// partitions; it must be unique among the running replicas.
	ReplicaID string
	// LeaseTTL is how long a replica's partition leases outlive its last
	// renewal: the longest a dead replica's partitions stay unowned. It must
	// not exceed the lease bucket's TTL (es.Topology.LeaseTTL), or leases
	// would lapse while their holders still act on them.
	LeaseTTL time.Duration

	// Logger receives structured logs; slog.Default() if nil.
	Logger *slog.Logger
	// Observer receives metrics; none if nil.
	Observer Observer
	// Now stamps events; time.Now if nil.
	Now func() time.Time
	// Tracer traces commands; a no-op provider if nil.
	Tracer trace.TracerProvider
}

// DefaultConfig returns the defaults, with a replica id named after the
// host.
func DefaultConfig() Config {
	return Config{
		Partitions:    contract.DefaultPartitions,
		MaxRetries:    5,
		CacheSize:     10_000,
		SnapshotEvery: 100,
		AckWait:       30 * time.Second,
		MaxAckPending: 4096,
		MaxInFlight:   4,
		DrainTimeout:  10 * time.Second,
		ReplicaID:     config.ReplicaID("aggregator"),
		LeaseTTL:      5 * time.Second,
	}
}

// withDependencies fills the nil dependencies.
func (c Config) withDependencies() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider()
	}
	return c
}

// Validate reports every problem at once, as config.FieldErrors.
func (c Config) Validate() error {
	errs := []error{es.ValidatePartitions("Partitions", c.Partitions)}
	for field, n := range map[string]int64{"MaxRetries": int64(c.MaxRetries), "CacheSize": int64(c.CacheSize), "SnapshotEvery": c.SnapshotEvery} {
		if n < 0 {
			errs = append(errs, config.Invalid(field, n, "must not be negative (0 switches it off)"))
		}
	}
	if c.AckWait < time.Second {
		errs = append(errs, config.Invalid("AckWait", c.AckWait, "must be at least 1s"))
	}
	if c.MaxAckPending < 1 {
		errs = append(errs, config.Invalid("MaxAckPending", c.MaxAckPending, "must be at least 1"))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, config.Invalid("MaxInFlight", c.MaxInFlight, "must be at least 1"))
	}
	if c.DrainTimeout <= 0 {
		errs = append(errs, config.Invalid("DrainTimeout", c.DrainTimeout, "must be positive"))
	}
	if c.LeaseTTL < time.Second {
		errs = append(errs, config.Invalid("LeaseTTL", c.LeaseTTL, "must be at least 1s"))
	}
	if err := order.ValidateID("replica id", c.ReplicaID); err != nil {
		errs = append(errs, config.Invalid("ReplicaID", c.ReplicaID, "%v", err))
	}
	return errors.Join(errs...)
}

// Service handles the commands of the partitions it runs.
type Service struct {
	js      jetstream.JetStream
	store   *es.Store
	repo    *es.Repository[Aggregate]
	cfg     Config
	handler *handler
	// owned counts the partitions this replica runs.
	owned atomic.Int32
}

// New returns a service over existing streams (see es.Setup).
func New(js jetstream.JetStream, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("aggregator config: %w", err)
	}
	cfg = cfg.withDependencies()
	store := es.NewStore(js, cfg.Partitions)
	repo := NewRepository(store, es.RepositoryConfig{CacheSize: cfg.CacheSize, SnapshotEvery: cfg.SnapshotEvery, Now: cfg.Now,
		SnapshotIgnored: func(orderID, reason string, err error) {
			cfg.Logger.Warn("snapshot ignored; the order is folded from its events", "order_id", orderID, "reason", reason, "error", err)
			cfg.Observer.SnapshotIgnored(reason)
		}})
	return &Service{
		js:    js,
		store: store,
		repo:  repo,
		cfg:   cfg,
		handler: &handler{store: store, repo: repo, maxRetries: cfg.MaxRetries, now: cfg.Now,
			log: cfg.Logger, obs: cfg.Observer, tracer: cfg.Tracer.Tracer("github.com/jetsource/jetsource/internal/aggregator")},
	}, nil
}

// Run handles its share of the partitions until ctx is canceled: replicas
// split the partitions through leases (see coordinator). Then it drains: it
// stops fetching, finishes the command in hand of each partition, gives its
// leases up and returns.
func (s *Service) Run(ctx context.Context) error {
	untyped, err := s.answerUntyped()
	if err != nil {
		return err
	}
	defer func() { _ = untyped.Unsubscribe() }()
	c := &coordinator{
		self:       s.cfg.ReplicaID,
		partitions: s.cfg.Partitions,
		ttl:        s.cfg.LeaseTTL,
		tick:       s.cfg.LeaseTTL / 5,
		clock:      systemClock(),
		run:        s.runPartition,
		log:        s.cfg.Logger,
		members:    map[string]time.Time{},
		owned:      map[int]*lease{},
		stopping:   map[int]<-chan struct{}{},
	}
	pause := backoff.New(250*time.Millisecond, 5*time.Second)
	for {
		kv, err := s.js.KeyValue(ctx, es.LeaseBucket)
		if err == nil {
			c.kv = kv
			err = c.loop(ctx)
		} else {
			err = fmt.Errorf("open lease bucket %s (orderctl streams apply creates it): %w", es.LeaseBucket, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		s.cfg.Logger.Warn("partition coordination failed; restarting it", "error", err)
		if !pause.Wait(ctx) {
			return nil
		}
	}
}

// Ready reports whether the replica serves: connected to NATS, the
// streams exist, and it runs at least one partition.
func (s *Service) Ready(ctx context.Context) error {
	if !s.js.Conn().IsConnected() {
		return errors.New("not connected to NATS")
	}
	if err := es.RequireStreams(ctx, s.js, s.cfg.Partitions); err != nil {
		return err
	}
	if s.owned.Load() == 0 {
		return errors.New("runs no command partition yet")
	}
	return nil
}

// errTenureOver stops a partition whose lease may have passed to another
// replica.
var errTenureOver = errors.New("partition lease tenure over")

// runPartition handles one partition's commands in stream order until ctx
// is canceled or the tenure of its lease ends; no command is started, and
// none is still being handled, after the tenure. Failures (NATS
// unreachable, consumer deleted) are logged and retried with backoff; they
// never skip a command.
func (s *Service) runPartition(ctx context.Context, partition int, t *tenure) {
	log := s.cfg.Logger.With("partition", partition)
	s.cfg.Observer.Partition(partition, true)
	s.owned.Add(1)
	defer func() {
		s.owned.Add(-1)
		s.cfg.Observer.Partition(partition, false)
	}()
	// Another process may have written this partition's orders while we
	// did not own it.
	s.repo.ForgetPartition(partition)
	pause := backoff.New(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		err := s.consume(ctx, partition, t, log)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errTenureOver) {
			log.Warn("partition stopped: its lease was not renewed in time")
			return
		}
		log.Warn("partition consumer stopped; restarting", "error", err)
		if !pause.Wait(ctx) {
			return
		}
	}
}

// consumerName is the durable consumer of a command partition.
func consumerName(partition int) string { return "aggregator-" + strconv.Itoa(partition) }

// consume (re)creates the partition's consumer and hands its messages to
// lanes (see lanes) until ctx ends or something fails. Before it returns,
// its lanes have stopped: no command of this consumer is still being
// handled when the next consumer redelivers the unsettled ones.
//
// The consumer is recreated on every start: on a work queue a new consumer
// begins at the oldest command still stored (not yet settled), so commands
// are handed over in stream order, with none skipped, even when a previous
// owner died holding some of them.
func (s *Service) consume(ctx context.Context, partition int, t *tenure, log *slog.Logger) (err error) {
	if !t.valid() {
		return errTenureOver
	}
	// The consumer keeps its state in memory, so it does not survive a
	// restart of its server: after a reconnect, start over with a new one.
	reconnected := s.js.Conn().StatusChanged(nats.CONNECTED)
	defer s.js.Conn().RemoveStatusListener(reconnected)
	stream, cons, err := s.recreateConsumer(ctx, partition)
	if err != nil {
		return err
	}
	// Pull well ahead of the lanes: a small batch makes every few commands
	// wait for the next pull request.
	it, err := cons.Messages(jetstream.PullMaxMessages(max(s.cfg.MaxInFlight, pullBatch)), jetstream.PullHeartbeat(pullHeartbeat))
	if err != nil {
		return fmt.Errorf("consume partition %d: %w", partition, err)
	}
	defer it.Stop()
	filter := contract.CommandPartitionFilter(partition)
	settled := newSettler(func(ctx context.Context, below uint64) error {
		return stream.Purge(ctx, jetstream.WithPurgeSubject(filter), jetstream.WithPurgeSequence(below))
	}, s.cfg.AckWait, max(1, s.cfg.MaxAckPending/2), s.cfg.Observer, log)
	// Deferred before the lanes stop, so it runs after: it settles what
	// they handled.
	defer settled.close()
	work := newLanes(ctx, s.cfg.MaxInFlight, func(ctx context.Context, d delivery, next func()) error {
		if err := s.process(ctx, d, t, log, next); err != nil {
			return err
		}
		settled.handled(d.meta.Sequence.Stream)
		return nil
	})
	go watch(work, t, reconnected)
	defer func() {
		// Why the lanes stopped (a handler's tenure ended, a reconnect)
		// unless the consumer failed first or the service stops.
		if cause := work.stop(); err == nil && ctx.Err() == nil {
			err = cause
		}
	}()
	// JetStream numbers every delivery of a consumer, redeliveries
	// included, one after the other. A gap means a delivery was lost on the
	// way (a consumer leader that died with it in flight, say) and will come
	// back only after the ack wait, behind later commands; a redelivery
	// means a command's ack wait ran out while it waited in its lane. Either
	// way, stop, and let a new consumer start again at the oldest command
	// still stored.
	var lastDelivery, lastSequence uint64
	for {
		msg, err := it.Next(jetstream.NextContext(work.ctx))
		if err != nil {
			if work.ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("next command of partition %d: %w", partition, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("command metadata: %w", err)
		}
		// The consumer is new, so its first delivery is number 1: a purge
		// below a later one would take a command lost on its way.
		if meta.Sequence.Consumer != lastDelivery+1 || meta.Sequence.Stream <= lastSequence {
			return fmt.Errorf("%w: delivery %d (stream sequence %d) after delivery %d (stream sequence %d)",
				errDeliveryGap, meta.Sequence.Consumer, meta.Sequence.Stream, lastDelivery, lastSequence)
		}
		lastDelivery, lastSequence = meta.Sequence.Consumer, meta.Sequence.Stream
		if !t.valid() {
			return errTenureOver
		}
		_, orderID, _, _ := contract.ParseStoredCommandSubject(msg.Subject())
		settled.deliver(msg, meta.Sequence.Stream, meta.NumPending)
		if !work.add(delivery{msg: msg, meta: meta, orderID: orderID}) {
			return nil
		}
	}
}

// watch stops the lanes when the tenure ends, even while the partition is
// idle, or when the connection was reestablished.
func watch(work *lanes, t *tenure, reconnected <-chan nats.Status) {
	timer := time.NewTimer(time.Until(t.deadline()))
	defer timer.Stop()
	for {
		select {
		case <-work.ctx.Done():
			return
		case <-reconnected:
			work.abort(errReconnected)
			return
		case <-timer.C:
			if !t.valid() {
				work.abort(errTenureOver)
				return
			}
			timer.Reset(time.Until(t.deadline()))
		}
	}
}

// pullBatch is how many commands a partition's consumer delivers ahead of
// the lanes.
const pullBatch = 256

// pullHeartbeat is how often an idle pull request hears from its consumer.
// A pull request the servers dropped is noticed after two missed
// heartbeats and the consumer restarted; at the client's default, half
// the 30 s expiry, a busy cluster that dropped one (seen at R3 with fsync
// before every ack) held its partition up for half a minute.
const pullHeartbeat = 2 * time.Second

// errReconnected restarts a partition whose connection was reestablished.
var errReconnected = errors.New("reconnected to NATS")

// errDeliveryGap restarts a partition whose deliveries are not the
// contiguous run that keeps commands in stream order.
var errDeliveryGap = errors.New("commands delivered out of order")

func (s *Service) recreateConsumer(ctx context.Context, partition int) (jetstream.Stream, jetstream.Consumer, error) {
	stream, err := s.js.Stream(ctx, contract.CommandsStream)
	if err != nil {
		return nil, nil, fmt.Errorf("look up %s: %w", contract.CommandsStream, err)
	}
	name := consumerName(partition)
	if err := stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, nil, fmt.Errorf("delete consumer %s: %w", name, err)
	}
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "JetSource aggregator, command partition " + strconv.Itoa(partition),
		FilterSubject: contract.CommandPartitionFilter(partition),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: s.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MemoryStorage: true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create consumer %s: %w", name, err)
	}
	return stream, cons, nil
}

// process handles one command: it establishes the outcome, retrying
// infrastructure failures in place so that later commands of the order
// never overtake it, then stores the result if the command has none yet;
// once it returns, the command may be settled (see settler). It calls next when later
// commands of the order may start: an accepted command's events are stored
// once its outcome is established, so its lane goes on while its result is
// stored; a rejection appends nothing, so its lane waits for its result,
// or a redelivery after a crash could be decided again on a later state.
//
// Cancelling ctx stops the retries but lets an attempt in progress finish
// within DrainTimeout; no attempt outlives the tenure.
func (s *Service) process(ctx context.Context, d delivery, t *tenure, log *slog.Logger, next func()) error {
	c := &command{s: s, d: d, t: t, log: log, started: time.Now()}
	_, _, c.commandType, _ = contract.ParseStoredCommandSubject(d.msg.Subject())
	ctx, span := s.handler.tracer.Start(tracing.Extract(ctx, nats.Header(d.msg.Headers())), "handle "+c.commandType,
		trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	// Attributes cost allocations even when nobody records them.
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", d.msg.Subject()),
			attribute.Int64("messaging.jetstream.stream_sequence", int64(d.meta.Sequence.Stream)))
	}
	err := c.retry(ctx, func(work context.Context) (err error) {
		c.out, err = s.handler.handle(work, d.msg.Subject(), d.msg.Headers(), d.msg.Data(), d.meta.Sequence.Stream, d.meta.NumDelivered > 1)
		return err
	})
	if err != nil {
		return err
	}
	if c.out.result.Status == contract.StatusAccepted {
		next()
	}
	if !c.out.stored {
		if err := c.retry(ctx, c.storeResult); err != nil {
			return err
		}
	}
	next()
	elapsed := time.Since(c.started)
	r := c.out.result
	status, code := string(r.Status), ""
	if r.Error != nil {
		code = string(r.Error.Code)
	}
	if recording {
		span.SetAttributes(attribute.String("jetsource.command_id", r.CommandID), attribute.String("jetsource.order_id", r.OrderID),
			attribute.String("jetsource.status", status), attribute.String("jetsource.error_code", code))
	}
	s.cfg.Observer.CommandHandled(c.commandType, status, code, c.out.replayed, elapsed)
	if r.Error == nil {
		if log.Enabled(ctx, slog.LevelDebug) {
			log.Debug("command handled", c.logAttrs(elapsed)...)
		}
		return nil
	}
	// Rejections are rarer and worth seeing at the default level.
	log.Info("command rejected", append(c.logAttrs(elapsed), "code", r.Error.Code, "error", r.Error.Message)...)
	return nil
}

// command is one command being processed.
type command struct {
	s           *Service
	d           delivery
	t           *tenure
	log         *slog.Logger
	started     time.Time
	commandType string
	out         outcome
}

// retry runs attempt until it succeeds, ctx ends or the tenure does. Each
// attempt may outlive ctx (a drain) by DrainTimeout, but never the tenure.
func (c *command) retry(ctx context.Context, attempt func(context.Context) error) error {
	pause := backoff.New(50*time.Millisecond, 2*time.Second)
	for {
		if !c.t.valid() {
			return errTenureOver
		}
		work, cancel := context.WithDeadline(context.WithoutCancel(ctx), minTime(time.Now().Add(c.s.cfg.DrainTimeout), c.t.deadline()))
		err := attempt(work)
		cancel()
		if err == nil {
			return nil
		}
		c.log.Warn("command not handled yet; retrying", "subject", c.d.msg.Subject(), "stream_sequence", c.d.meta.Sequence.Stream, "error", err)
		if !pause.Wait(ctx) {
			return ctx.Err()
		}
		// Keep JetStream from redelivering it while we retry.
		_ = c.d.msg.InProgress()
	}
}

func (c *command) logAttrs(elapsed time.Duration) []any {
	r := c.out.result
	return []any{"command_id", r.CommandID, "order_id", r.OrderID, "correlation_id", c.out.correlationID, "command_type", c.commandType,
		"status", r.Status, "replayed", c.out.replayed, "stream_sequence", c.d.meta.Sequence.Stream, "duration_ms", float64(elapsed.Microseconds()) / 1000}
}

// storeResult stores the outcome's result if the command has none yet: a
// command has one outcome, the first, and a replay never stores it again.
// If another was stored first, the outcome becomes it.
func (c *command) storeResult(ctx context.Context) error {
	stored, first, err := c.s.store.PublishFirstResult(ctx, c.out.subject, c.out.result)
	if err != nil {
		return err
	}
	if !first && !c.out.replayed {
		c.log.Warn("command already had an outcome; the first stands", "command_id", c.out.result.CommandID,
			"first_status", stored.Status, "new_status", c.out.result.Status)
	}
	c.out.result, c.out.replayed, c.out.stored = stored, c.out.replayed || !first, true
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
