package aggregator

import "time"

// Observer receives what the aggregator does, for metrics. Calls come from
// the partition goroutines concurrently and must not block.
type Observer interface {
	// CommandHandled reports one outcome: status accepted or rejected, the
	// error code of a rejection, whether it replayed an earlier outcome,
	// and the time from receipt to the result being stored.
	CommandHandled(commandType, status, code string, replayed bool, d time.Duration)
	// CacheLookup reports whether a load was served from memory.
	CacheLookup(hit bool)
	// Append reports one append to the event store and its error, if any.
	Append(d time.Duration, err error)
	// Retry reports a reload after a conflict or an unknown outcome.
	Retry()
	// Partition reports that this process took (owned) or gave up a
	// command partition.
	Partition(partition int, owned bool)
	// SnapshotIgnored reports a snapshot a load did not use, and why (one
	// of the es.Snapshot* reasons).
	SnapshotIgnored(reason string)
	// UntypedCommand reports a message on a command subject without the
	// command type token, which no stream stores.
	UntypedCommand()
	// Settled reports handled commands taken off the work queue at once: by
	// one purge, or, when that failed, by acking each.
	Settled(commands int, byPurge bool)
}

type nopObserver struct{}

func (nopObserver) CommandHandled(string, string, string, bool, time.Duration) {}
func (nopObserver) CacheLookup(bool)                                           {}
func (nopObserver) Append(time.Duration, error)                                {}
func (nopObserver) Retry()                                                     {}
func (nopObserver) Partition(int, bool)                                        {}
func (nopObserver) SnapshotIgnored(string)                                     {}
func (nopObserver) UntypedCommand()                                            {}
func (nopObserver) Settled(int, bool)                                          {}
