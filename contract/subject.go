package contract

import (
	"hash/fnv"
	"strconv"
	"strings"
)

// Stream names.
const (
	CommandsStream  = "ORDERS_COMMANDS"
	EventsStream    = "ORDERS_EVENTS"
	SnapshotsStream = "ORDERS_SNAPSHOTS"
	ResultsStream   = "ORDERS_RESULTS"
)

// Subject prefixes, one per stream.
const (
	CommandsPrefix  = "orders.commands."
	EventsPrefix    = "orders.events."
	SnapshotsPrefix = "orders.snapshots."
	ResultsPrefix   = "orders.results."
)

// DefaultPartitions is the partition count of streams created without
// another one configured.
const DefaultPartitions = 16

// Partition is FNV-1a 32 of the order id modulo the partition count: what
// the server's {{partition(n,1)}} subject transform computes for the
// command stream, so a command and its events land in the same partition.
func Partition(orderID string, partitions int) int {
	h := fnv.New32a()
	h.Write([]byte(orderID))
	return int(h.Sum32() % uint32(partitions))
}

// CommandSubject is where senders publish a command. The stream's subject
// transform inserts the partition token before storing it.
func CommandSubject(orderID, commandType string) string {
	return CommandsPrefix + orderID + "." + commandType
}

// UntypedCommandSubjects matches a command subject that lacks the command
// type token (orders.commands.<orderId>). No stream stores such a message;
// the aggregator answers a request on it with an error saying so.
const UntypedCommandSubjects = CommandsPrefix + "*"

// CommandPartitionFilter matches the stored commands of one partition.
func CommandPartitionFilter(partition int) string {
	return CommandsPrefix + strconv.Itoa(partition) + ".>"
}

// ParseStoredCommandSubject splits orders.commands.<p>.<orderId>.<type>.
func ParseStoredCommandSubject(subject string) (partition int, orderID, commandType string, ok bool) {
	rest, found := strings.CutPrefix(subject, CommandsPrefix)
	if !found {
		return 0, "", "", false
	}
	tokens := strings.Split(rest, ".")
	if len(tokens) != 3 {
		return 0, "", "", false
	}
	p, err := strconv.Atoi(tokens[0])
	if err != nil {
		return 0, "", "", false
	}
	return p, tokens[1], tokens[2], true
}

// EventSubject is an order's subject in the event store.
func EventSubject(orderID string, partitions int) string {
	return EventsPrefix + strconv.Itoa(Partition(orderID, partitions)) + "." + orderID
}

// EventPartitionFilter matches the events of one partition.
func EventPartitionFilter(partition int) string {
	return EventsPrefix + strconv.Itoa(partition) + ".*"
}

// AllEventsFilter matches the events of every order: what downstream
// consumers read.
const AllEventsFilter = EventsPrefix + ">"

// OrderEventsFilter matches the events of one order without knowing its
// partition.
func OrderEventsFilter(orderID string) string { return EventsPrefix + "*." + orderID }

// ParseEventSubject splits orders.events.<p>.<orderId>.
func ParseEventSubject(subject string) (partition int, orderID string, ok bool) {
	rest, found := strings.CutPrefix(subject, EventsPrefix)
	if !found {
		return 0, "", false
	}
	ptoken, id, found := strings.Cut(rest, ".")
	if !found || id == "" || strings.Contains(id, ".") {
		return 0, "", false
	}
	p, err := strconv.Atoi(ptoken)
	if err != nil {
		return 0, "", false
	}
	return p, id, true
}

// SnapshotSubject holds an order's latest snapshot.
func SnapshotSubject(orderID string) string { return SnapshotsPrefix + orderID }

// ResultSubject holds the outcome of a command.
func ResultSubject(commandID string) string { return ResultsPrefix + commandID }

// UnaddressableResultSubject holds the rejection of a command that carried
// no usable command id; the sender finds it by the stream sequence its
// publish acknowledgement returned.
func UnaddressableResultSubject(commandSequence uint64) string {
	return ResultsPrefix + "invalid." + strconv.FormatUint(commandSequence, 10)
}
