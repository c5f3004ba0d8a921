package es

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jetsource/jetsource/contract"
)

// Fold turns stored events into an aggregate state S.
type Fold[S any] struct {
	// Zero is the state of an aggregate that has no events.
	Zero func(aggregateID string) S
	// Apply folds one stored event into the state.
	Apply func(S, contract.Event) (S, error)
}

// RepositoryConfig tunes loading.
type RepositoryConfig struct {
	// CacheSize is how many aggregates stay in memory; 0 disables the cache.
	CacheSize int
	// SnapshotEvery takes a snapshot whenever an append crosses a multiple
	// of this many versions; 0 disables snapshots.
	SnapshotEvery int64
	// SnapshotSchema is the version of S's JSON encoding. Snapshots of
	// another version are ignored, so changing S needs only a bump here.
	SnapshotSchema int
	// Now stamps snapshots; time.Now if nil.
	Now func() time.Time
	// SnapshotIgnored, if set, hears of every snapshot a load did not use,
	// with the reason (the Snapshot* constants) and the details.
	SnapshotIgnored func(aggregateID, reason string, err error)
}

// Loaded is an aggregate's state with the position it was folded up to.
type Loaded[S any] struct {
	State S
	// Version is the aggregate version of the last event folded in.
	Version int64
	// Sequence is the stream sequence of the last event folded in, the
	// expected sequence of the next append (0 when there are no events).
	Sequence uint64
}

// Repository loads aggregates of one kind (cache, then snapshot plus the
// events after it) and appends their events. It assumes a single writer per
// aggregate, as the aggregator's partition ownership guarantees: a cached
// state is trusted until an append conflicts.
type Repository[S any] struct {
	store *Store
	fold  Fold[S]
	cfg   RepositoryConfig
	cache *lru[Loaded[S]]
}

// NewRepository returns a repository over store.
func NewRepository[S any](store *Store, fold Fold[S], cfg RepositoryConfig) *Repository[S] {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Repository[S]{store: store, fold: fold, cfg: cfg, cache: newLRU[Loaded[S]](cfg.CacheSize)}
}

// Load returns the aggregate's current state: from the cache, else from its
// latest snapshot and the events after it, else from all its events.
func (r *Repository[S]) Load(ctx context.Context, aggregateID string) (Loaded[S], bool, error) {
	if l, ok := r.cache.get(aggregateID); ok {
		return l, true, nil
	}
	l, err := r.loadCold(ctx, aggregateID)
	if err != nil {
		return Loaded[S]{}, false, err
	}
	r.cache.put(aggregateID, l)
	return l, false, nil
}

// Reload drops any cached state and loads the aggregate with every event the
// stream leader has acknowledged, even if the replica answering direct gets
// lags. Use it after a conflict or an append of unknown outcome.
func (r *Repository[S]) Reload(ctx context.Context, aggregateID string) (Loaded[S], error) {
	r.cache.remove(aggregateID)
	l, err := r.loadCold(ctx, aggregateID)
	if err != nil {
		return Loaded[S]{}, err
	}
	last, err := r.store.LeaderLastSequence(ctx, aggregateID)
	if err != nil {
		return Loaded[S]{}, err
	}
	if last > l.Sequence {
		missing, err := r.store.ReadFromLeader(ctx, aggregateID, l.Sequence)
		if err != nil {
			return Loaded[S]{}, err
		}
		if l, err = r.apply(l, missing, nil); err != nil {
			return Loaded[S]{}, err
		}
	}
	r.cache.put(aggregateID, l)
	return l, nil
}

func (r *Repository[S]) loadCold(ctx context.Context, aggregateID string) (Loaded[S], error) {
	zero := Loaded[S]{State: r.fold.Zero(aggregateID)}
	// One direct get of the newest event answers the commonest cold load,
	// a new aggregate, and tells whether a snapshot is current.
	last, err := r.store.directLastSequence(ctx, aggregateID)
	if err != nil || last == 0 {
		return zero, err
	}
	l, fromSnapshot := zero, false
	if r.cfg.SnapshotEvery > 0 {
		l, fromSnapshot = r.fromSnapshot(ctx, aggregateID, last, zero)
	}
	if l.Sequence == last {
		return l, nil
	}
	events, err := r.store.Read(ctx, aggregateID, l.Sequence)
	if err != nil {
		return Loaded[S]{}, err
	}
	folded, err := r.apply(l, events, nil)
	if err != nil && fromSnapshot && len(events) > 0 && events[0].Version != l.Version+1 {
		// The snapshot does not fit the events after it: fold them all.
		r.ignored(aggregateID, SnapshotInconsistent, err)
		if events, err = r.store.Read(ctx, aggregateID, 0); err != nil {
			return Loaded[S]{}, err
		}
		return r.apply(zero, events, nil)
	}
	return folded, err
}

// Why a load ignored a snapshot (RepositoryConfig.SnapshotIgnored).
const (
	// SnapshotUnreadable: the snapshot could not be fetched.
	SnapshotUnreadable = "unreadable"
	// SnapshotOtherSchema: it was written by another schema version of
	// the state.
	SnapshotOtherSchema = "other_schema"
	// SnapshotUndecodable: its state does not decode.
	SnapshotUndecodable = "undecodable"
	// SnapshotAhead: it covers a sequence beyond the aggregate's last
	// event.
	SnapshotAhead = "ahead"
	// SnapshotInconsistent: the events after it do not continue its
	// version.
	SnapshotInconsistent = "inconsistent"
)

// fromSnapshot returns the state of the aggregate's latest snapshot and
// true, or zero and false if there is none or it cannot be used. A
// snapshot is only a shortcut: it is used only if it is of this schema,
// decodes, and covers no more than the events up to last.
func (r *Repository[S]) fromSnapshot(ctx context.Context, aggregateID string, last uint64, zero Loaded[S]) (Loaded[S], bool) {
	snap, ok, err := r.store.LoadSnapshot(ctx, aggregateID)
	switch {
	case err != nil:
		r.ignored(aggregateID, SnapshotUnreadable, err)
		return zero, false
	case !ok:
		return zero, false
	case snap.SchemaVersion != r.cfg.SnapshotSchema:
		r.ignored(aggregateID, SnapshotOtherSchema, fmt.Errorf("schema version %d, this build reads %d", snap.SchemaVersion, r.cfg.SnapshotSchema))
		return zero, false
	case snap.Sequence > last:
		r.ignored(aggregateID, SnapshotAhead, fmt.Errorf("it covers sequence %d, the last event is at %d", snap.Sequence, last))
		return zero, false
	}
	var s S
	if err := json.Unmarshal(snap.State, &s); err != nil {
		r.ignored(aggregateID, SnapshotUndecodable, err)
		return zero, false
	}
	return Loaded[S]{State: s, Version: snap.Version, Sequence: snap.Sequence}, true
}

func (r *Repository[S]) ignored(aggregateID, reason string, err error) {
	if r.cfg.SnapshotIgnored != nil {
		r.cfg.SnapshotIgnored(aggregateID, reason, err)
	}
}

// AsOf bounds a temporal load. Zero fields do not bound.
type AsOf struct {
	// Version is the last aggregate version to include.
	Version int64
	// Time excludes events stamped after it.
	Time time.Time
}

// LoadAsOf folds the aggregate's events up to a version or a time, from the
// events alone (no cache, no snapshot), for temporal queries.
func (r *Repository[S]) LoadAsOf(ctx context.Context, aggregateID string, asOf AsOf) (Loaded[S], error) {
	events, err := r.store.Read(ctx, aggregateID, 0)
	if err != nil {
		return Loaded[S]{}, err
	}
	stop := func(e contract.Event) bool {
		return asOf.Version > 0 && e.Version > asOf.Version ||
			!asOf.Time.IsZero() && e.Metadata.Timestamp.After(asOf.Time)
	}
	return r.apply(Loaded[S]{State: r.fold.Zero(aggregateID)}, events, stop)
}

// apply folds events into l, checking that versions continue without gaps.
// It stops before the first event for which stop returns true.
func (r *Repository[S]) apply(l Loaded[S], events []contract.Event, stop func(contract.Event) bool) (Loaded[S], error) {
	for _, e := range events {
		if stop != nil && stop(e) {
			break
		}
		if e.Version != l.Version+1 {
			return Loaded[S]{}, fmt.Errorf("%w: %s event %s at sequence %d has version %d after version %d",
				ErrCorrupt, e.AggregateID, e.ID, e.Sequence, e.Version, l.Version)
		}
		s, err := r.fold.Apply(l.State, e)
		if err != nil {
			return Loaded[S]{}, fmt.Errorf("%w: apply event %s at sequence %d: %v", ErrCorrupt, e.ID, e.Sequence, err)
		}
		l = Loaded[S]{State: s, Version: e.Version, Sequence: e.Sequence}
	}
	return l, nil
}

// Append stores events decided on cur and caches next, the state they lead
// to. On any error the cached state is dropped, so the next Load rereads
// the stream. Every SnapshotEvery versions it also stores a snapshot; a
// failed snapshot is reported in the returned SnapshotErr, not as a failed
// append.
func (r *Repository[S]) Append(ctx context.Context, aggregateID string, cur Loaded[S], events []contract.Event, next S) (Appended[S], error) {
	seq, err := r.store.Append(ctx, aggregateID, cur.Sequence, events)
	if err != nil {
		r.cache.remove(aggregateID)
		return Appended[S]{}, err
	}
	l := Loaded[S]{State: next, Version: events[len(events)-1].Version, Sequence: seq}
	r.cache.put(aggregateID, l)
	out := Appended[S]{Loaded: l}
	if n := r.cfg.SnapshotEvery; n > 0 && cur.Version/n != l.Version/n {
		out.SnapshotErr = r.snapshot(ctx, aggregateID, l)
	}
	return out, nil
}

// Appended is the state after a successful append.
type Appended[S any] struct {
	Loaded[S]
	// SnapshotErr is set when a due snapshot could not be stored. Loading
	// still works, from an older snapshot or the events.
	SnapshotErr error
}

func (r *Repository[S]) snapshot(ctx context.Context, aggregateID string, l Loaded[S]) error {
	state, err := json.Marshal(l.State)
	if err != nil {
		return fmt.Errorf("encode snapshot state of %s: %w", aggregateID, err)
	}
	return r.store.SaveSnapshot(ctx, Snapshot{
		AggregateID:   aggregateID,
		Version:       l.Version,
		Sequence:      l.Sequence,
		SchemaVersion: r.cfg.SnapshotSchema,
		TakenAt:       contract.Time{Time: r.cfg.Now()},
		State:         state,
	})
}

// ForgetPartition drops every cached aggregate of a partition, for when
// another process may have written to it (ownership moved).
func (r *Repository[S]) ForgetPartition(partition int) {
	r.cache.removeIf(func(id string) bool { return contract.Partition(id, r.store.partitions) == partition })
}
