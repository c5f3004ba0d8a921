package aggregator

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// delivery is one delivered command message of a partition.
type delivery struct {
	msg     jetstream.Msg
	meta    *jetstream.MsgMetadata
	orderID string
}

// lanes handles the commands one consumer delivers for a partition: the
// commands of different orders concurrently, and the commands of one order
// one at a time, in delivery order, in the order's lane. At most bound
// commands are in flight, from add until handle returns, and bound workers
// handle them.
//
// handle calls next once the lane may go on to the order's next command
// (its outcome is established and whatever later commands must see is
// stored); it may go on finishing the command (storing its result, acking
// it) after that. An error from handle stops the lanes.
//
// Stopping drops the commands still queued, unacknowledged, and waits for
// the ones being handled: the next consumer delivers the dropped ones
// again, in stream order, and none can be overtaken by a command of its
// order, since no handler of this consumer is left running.
type lanes struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	slots  chan struct{}
	ready  chan string // orders whose lane has a command to start
	handle func(ctx context.Context, d delivery, next func()) error

	mu     sync.Mutex
	queues map[string][]delivery // per order; the first is being handled
	wg     sync.WaitGroup
}

func newLanes(ctx context.Context, bound int, handle func(ctx context.Context, d delivery, next func()) error) *lanes {
	ctx, cancel := context.WithCancelCause(ctx)
	l := &lanes{ctx: ctx, cancel: cancel, slots: make(chan struct{}, bound), ready: make(chan string, bound), handle: handle,
		queues: map[string][]delivery{}}
	for range bound {
		l.wg.Go(l.work)
	}
	return l
}

// add queues d behind the commands of its order, waiting while bound
// commands are in flight. It returns false if the lanes stopped first.
func (l *lanes) add(d delivery) bool {
	select {
	case l.slots <- struct{}{}:
	case <-l.ctx.Done():
		return false
	}
	l.mu.Lock()
	q := l.queues[d.orderID]
	l.queues[d.orderID] = append(q, d)
	l.mu.Unlock()
	if len(q) == 0 {
		// Never blocks: at most bound commands, so lanes, are in flight.
		l.ready <- d.orderID
	}
	return true
}

func (l *lanes) work() {
	for {
		select {
		case <-l.ctx.Done():
			return
		case orderID := <-l.ready:
			if l.ctx.Err() != nil {
				// Stopping: start nothing more.
				return
			}
			l.mu.Lock()
			d := l.queues[orderID][0]
			l.mu.Unlock()
			var once sync.Once
			next := func() { once.Do(func() { l.next(orderID) }) }
			err := l.handle(l.ctx, d, next)
			if err != nil {
				l.cancel(err)
			} else {
				next()
			}
			<-l.slots
		}
	}
}

// next takes the order's first command off its lane and readies the lane
// if it holds another.
func (l *lanes) next(orderID string) {
	l.mu.Lock()
	q := l.queues[orderID][1:]
	if len(q) == 0 {
		delete(l.queues, orderID)
	} else {
		l.queues[orderID] = q
	}
	l.mu.Unlock()
	if len(q) > 0 {
		l.ready <- orderID
	}
}

// abort stops the lanes for cause; stop still waits for them.
func (l *lanes) abort(cause error) { l.cancel(cause) }

// stop drops the queued commands, waits for those being handled and
// returns why the lanes stopped: the first handler error, or the parent
// context's error.
func (l *lanes) stop() error {
	l.cancel(nil)
	l.wg.Wait()
	return context.Cause(l.ctx)
}
