package client

import (
	"context"
	"fmt"
	"iter"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
)

// Followed is one event of a followed stream: the envelope, upcast to the
// current schema version, and its decoded data.
type Followed struct {
	Event contract.Event
	Data  contract.EventData
}

// Follow yields the stored events of one order, or of every order if
// orderID is empty, in stream order from the stream sequence after `after`
// (0: from the first), then each new one as it is stored, until ctx ends,
// which ends the iteration without an error. Resume a follower by passing
// the Sequence of the last event it handled.
//
// An event this build cannot decode (a type or schema version of a newer
// one) is yielded with its envelope and the error, and following goes on
// unless the loop breaks. A failure to follow at all is yielded once and
// ends the iteration.
//
// It reads with an ordered consumer: ephemeral, and recreated by nats.go
// after a gap, so a follower neither misses nor repeats an event. It needs
// the right to create consumers on ORDERS_EVENTS (the reader role).
func (c *Client) Follow(ctx context.Context, orderID string, after uint64) iter.Seq2[Followed, error] {
	return func(yield func(Followed, error) bool) {
		filter := contract.AllEventsFilter
		if orderID != "" {
			if err := contract.ValidateID("orderId", orderID); err != nil {
				yield(Followed{}, err)
				return
			}
			filter = contract.OrderEventsFilter(orderID)
		}
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
		if after > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
		}
		cons, err := c.js.OrderedConsumer(ctx, contract.EventsStream, cfg)
		if err != nil {
			yield(Followed{}, fmt.Errorf("follow %s: %w", filter, err))
			return
		}
		msgs, err := cons.Messages()
		if err != nil {
			yield(Followed{}, fmt.Errorf("follow %s: %w", filter, err))
			return
		}
		defer msgs.Stop()
		for {
			m, err := msgs.Next(jetstream.NextContext(ctx))
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				yield(Followed{}, fmt.Errorf("follow %s: %w", filter, err))
				return
			}
			meta, err := m.Metadata()
			if err != nil {
				yield(Followed{}, fmt.Errorf("follow %s: %w", filter, err))
				return
			}
			e, err := readEvent(m.Subject(), meta.Sequence.Stream, m.Data())
			var data contract.EventData
			if err == nil {
				data, err = contract.ParseEventData(e.Type, e.Data)
			}
			if !yield(Followed{Event: e, Data: data}, err) {
				return
			}
		}
	}
}

// readEvent reads a stored event's envelope, upcast to the current schema
// version. On an error it returns as much of the envelope as it read.
func readEvent(subject string, sequence uint64, body []byte) (contract.Event, error) {
	e, err := contract.DecodeEvent(subject, sequence, body)
	if err != nil {
		return e, err
	}
	up, err := contract.Upcast(e)
	if err != nil {
		return e, err
	}
	return up, nil
}
