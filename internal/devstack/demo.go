package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
	"github.com/jetsource/jetsource/internal/workload"
)

// demoStall is how long the demo waits without any progress before it
// gives up.
const demoStall = time.Minute

// Progress shows a line that changes, such as a progress bar.
type Progress interface {
	Update(text string)
	// Finish ends the line before other output.
	Finish()
}

// Demo publishes n orders' lifecycles as another service would, shows
// progress until every command has its result and every projection has
// projected the events, and reports how it went on the stack's output.
func (st *Stack) Demo(ctx context.Context, n int, line Progress) error {
	// A fresh run id per run keeps ids apart from earlier runs' orders.
	run := "demo-" + time.Now().UTC().Format("20060102-150405")
	cmds := workload.Waves(run, n)
	wantRejected := 0
	for _, c := range cmds {
		if !c.WantAccepted {
			wantRejected++
		}
	}
	nc, err := nats.Connect(st.natsURL, nats.Name("jetsource-dev-demo"))
	if err != nil {
		return fmt.Errorf("demo: connect to nats: %w", err)
	}
	defer nc.Close()
	t := &demoTracker{prefix: run + "-", partitions: st.cfg.Partitions, results: map[string]contract.Result{}}
	if err := t.subscribe(nc); err != nil {
		return err
	}

	st.printf("\nDemo: %d orders (ids %s-ord-0 to -%d), %d commands\n", n, run, n-1, len(cmds))
	st.log.Info("demo started", "run", run, "orders", n, "commands", len(cmds))
	began := time.Now()
	pubErr := make(chan error, 1)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("demo: jetstream: %w", err)
	}
	go t.publish(ctx, js, cmds, pubErr)
	defer line.Finish()
	if err := st.follow(ctx, t, line, pubErr, len(cmds), len(cmds)-wantRejected); err != nil {
		return err
	}
	line.Finish()
	answered, projected := t.lastResultAt().Sub(began), time.Since(began)
	st.printf("All %d commands answered in %s (%.0f commands/s); read models caught up %s later\n",
		len(cmds), answered.Round(10*time.Millisecond), float64(len(cmds))/answered.Seconds(), (projected - answered).Round(10*time.Millisecond))
	if wrong := t.unexpected(cmds); len(wrong) > 0 {
		st.printf("WARNING: %d commands did not end as the workload intends, for example:\n  %s\n",
			len(wrong), strings.Join(wrong[:min(len(wrong), 3)], "\n  "))
	} else {
		st.printf("%d rejected, as the workload intends (a payment with the wrong amount, then the right one)\n", wantRejected)
	}
	st.log.Info("demo done", "run", run, "elapsed", projected.String())
	return nil
}

// follow shows the demo's progress every 100 ms until every command is
// answered and every event projected; it gives up after demoStall without
// progress.
func (st *Stack) follow(ctx context.Context, t *demoTracker, line Progress, pubErr <-chan error, commands, wantEvents int) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last demoProgress
	lastMove := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-pubErr:
			return err
		case <-st.Done():
			return st.Err()
		case <-tick.C:
		}
		p, err := t.progress(ctx, st.admin)
		if err != nil {
			return err
		}
		// Every accepted command of the workload appends one event.
		p.commands, p.wantEvents = commands, wantEvents
		line.Update(p.String())
		if p.results == commands && p.projected == p.events {
			return nil
		}
		if p != last {
			last, lastMove = p, time.Now()
		} else if time.Since(lastMove) > demoStall {
			return fmt.Errorf("demo: no progress for %s (%s); see the log in %s", demoStall, p, st.LogPath())
		}
	}
}

// demoTracker counts the demo's published commands, results and events.
type demoTracker struct {
	prefix     string // of the demo's command ids
	partitions int
	published  atomic.Int64

	mu      sync.Mutex
	results map[string]contract.Result // by command id; a result can come twice
	events  int
	lastAt  time.Time
}

// subscribe counts the results of the demo's commands.
func (t *demoTracker) subscribe(nc *nats.Conn) error {
	sub, err := nc.Subscribe(contract.ResultSubject("*"), t.onResult)
	if err != nil {
		return fmt.Errorf("demo: subscribe to results: %w", err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("demo: subscribe to results: %w", err)
	}
	return nil
}

// publish publishes the commands, pipelined, and counts their
// acknowledgements.
func (t *demoTracker) publish(ctx context.Context, js jetstream.JetStream, cmds []workload.Command, errs chan<- error) {
	acks := make(chan jetstream.PubAckFuture, len(cmds))
	go func() {
		for f := range acks {
			select {
			case <-f.Ok():
				t.published.Add(1)
			case err := <-f.Err():
				sendFirst(errs, fmt.Errorf("demo: publish: %w", err))
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	defer close(acks)
	for _, c := range cmds {
		if ctx.Err() != nil {
			return
		}
		f, err := js.PublishMsgAsync(c.Msg())
		if err != nil {
			sendFirst(errs, fmt.Errorf("demo: publish: %w", err))
			return
		}
		acks <- f
	}
}

// sendFirst sends the first error; the demo stops at it.
func sendFirst(errs chan<- error, err error) {
	select {
	case errs <- err:
	default:
	}
}

func (t *demoTracker) onResult(m *nats.Msg) {
	var r contract.Result
	if json.Unmarshal(m.Data, &r) != nil || !strings.HasPrefix(r.CommandID, t.prefix) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, seen := t.results[r.CommandID]; seen {
		return
	}
	t.results[r.CommandID] = r
	t.events += len(r.EventIDs)
	t.lastAt = time.Now()
}

func (t *demoTracker) lastResultAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastAt
}

// unexpected describes the commands whose outcome is not the one the
// workload intends.
func (t *demoTracker) unexpected(cmds []workload.Command) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, c := range cmds {
		r := t.results[c.ID]
		switch {
		case c.WantAccepted && r.Error != nil:
			out = append(out, fmt.Sprintf("%s %s of %s: rejected, %s: %s", c.Type, c.ID, c.OrderID, r.Error.Code, r.Error.Message))
		case !c.WantAccepted && r.Status == contract.StatusAccepted:
			out = append(out, fmt.Sprintf("%s %s of %s: accepted", c.Type, c.ID, c.OrderID))
		}
	}
	return out
}

// demoProgress is where the demo is.
type demoProgress struct {
	commands, published, results int
	// events counts the events of the results so far; wantEvents those the
	// workload will append; projected the events every projection has
	// projected (the slowest projection's count).
	events, wantEvents, projected int
}

// progress counts an accepted command's events as projected by a
// projection once the cursor of the order's partition has reached the
// result's stream sequence.
func (t *demoTracker) progress(ctx context.Context, admin *projections.Admin) (demoProgress, error) {
	cursors := make([]map[int]projections.Checkpoint, 0, 3)
	for _, name := range readmodel.Names() {
		cps, err := admin.Checkpoints(ctx, name)
		if err != nil {
			return demoProgress{}, err
		}
		cursors = append(cursors, cps)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := demoProgress{published: int(t.published.Load()), results: len(t.results), events: t.events, projected: t.events}
	for _, cps := range cursors {
		n := 0
		for _, r := range t.results {
			if r.Status == contract.StatusAccepted && cps[contract.Partition(r.OrderID, t.partitions)].LastSequence >= r.StreamSequence {
				n += len(r.EventIDs)
			}
		}
		p.projected = min(p.projected, n)
	}
	return p, nil
}

// String draws a bar over the three steps (published, answered, projected)
// and the counts.
func (p demoProgress) String() string {
	const width = 24
	done := (float64(p.published+p.results)/float64(max(p.commands, 1)) + float64(p.projected)/float64(max(p.wantEvents, 1))) / 3
	filled := min(int(done*width), width)
	return fmt.Sprintf("[%s%s] %3.0f%%  commands published %d/%d · results %d/%d · events projected %d/%d",
		strings.Repeat("█", filled), strings.Repeat("░", width-filled), 100*min(done, 1),
		p.published, p.commands, p.results, p.commands, p.projected, p.wantEvents)
}
