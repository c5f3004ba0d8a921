package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/workload"
)

// cell is one server setting of the production matrix.
type cell struct {
	name, title string
	replicas    int
	sync        bool
	orders      int
	// rate is the commands per second of the fixed-rate latency run; 0
	// for none.
	rate int
	// today is the measurement of this setting.
	today string
	// record puts the cell's figures into the targets table.
	record func(t *targets, ratio float64, p99 time.Duration)
}

func matrix(cfg config) []cell {
	return []cell{
		{name: "r1", title: "R1, default fsync interval", replicas: 1, orders: cfg.orders, rate: 1000,
			today:  "raw 94k to 135k/s, aggregator 6.8k to 7.7k/s, ratio 0.056 to 0.072",
			record: func(t *targets, r float64, p99 time.Duration) { t.ratioR1, t.p99R1 = r, p99 }},
		{name: "r3", title: "R3 (three-node cluster), default fsync interval", replicas: 3, orders: cfg.orders,
			today:  "raw 49.9k/s, aggregator 2.5k/s, ratio 0.051",
			record: func(t *targets, r float64, _ time.Duration) { t.ratioR3 = r }},
		{name: "r1-sync", title: "R1, fsync before every ack", replicas: 1, sync: true, orders: cfg.syncOrders,
			today:  "raw 4.5k/s, aggregator 1.3k/s, ratio 0.29",
			record: func(*targets, float64, time.Duration) {}},
		{name: "r3-sync", title: "R3 (three-node cluster), fsync before every ack: the production overlay", replicas: 3, sync: true,
			orders: cfg.syncOrders, rate: 200,
			today:  "raw 2.9k/s, aggregator 329/s, ratio 0.115",
			record: func(t *targets, r float64, _ time.Duration) { t.ratioR3Sync = r }},
	}
}

// benchCell measures raw conditional appends, then the aggregator end to
// end on a workload of as many commands, then, if the cell has a rate, the
// latency at that fixed rate, all on fresh servers.
func benchCell(ctx context.Context, cfg config, c cell, t *targets) error {
	cmds := workload.Waves(c.name, c.orders)
	rule(fmt.Sprintf("%s: %d orders, %d commands", c.title, c.orders, len(cmds)))
	profile := ""
	if cfg.profile != "" {
		profile = cfg.profile + "." + c.name
	}
	cl, err := startCluster(filepath.Join(cfg.workDir, c.name), c.replicas, c.sync, profile)
	if err != nil {
		return err
	}
	defer cl.stop()
	nc, err := nats.Connect(cl.url(), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(16384))
	if err != nil {
		return err
	}
	if err := setupStreams(ctx, js, c.replicas); err != nil {
		return err
	}

	// Raw appends run before and after the aggregator, and the ratio uses
	// their mean, so that a machine whose speed drifts during the cell (a
	// shared disk, say) skews it less.
	cpu0 := cl.cpu()
	before, err := rawAppends(ctx, js, "raw-", c.orders, len(cmds))
	if err != nil {
		return err
	}
	rawCPU := cl.cpu() - cpu0

	agg, err := startAggregator(cl.url(), profile)
	if err != nil {
		return err
	}
	defer agg.stop()
	cpu0 = cl.cpu()
	if err := cl.mark(); err != nil {
		return err
	}
	tp, err := throughput(ctx, nc, js, agg, cmds)
	if err != nil {
		return err
	}
	if err := cl.report(); err != nil {
		return err
	}
	cmdCPU := cl.cpu() - cpu0
	after, err := rawAppends(ctx, js, "raw2-", c.orders, len(cmds))
	if err != nil {
		return err
	}
	raw := (before + after) / 2
	ratio := tp.rate / raw
	fmt.Printf("  baseline: raw conditional appends, pipelined (300-byte events)  %8.0f appends/s  (%.0f before, %.0f after the aggregator)\n",
		raw, before, after)
	fmt.Printf("  aggregator end to end (publish → stored result)                 %8.0f commands/s  (%s; publishing took %s)\n",
		tp.rate, tp.elapsed.Round(time.Millisecond), tp.published.Round(time.Millisecond))
	fmt.Printf("  ratio aggregator / raw appends                                  %8.3f\n", ratio)
	fmt.Printf("  aggregator process: %s\n", tp.usage.perCommand(len(cmds)))
	fmt.Printf("  servers' CPU: %s per raw append, %s per command\n", us(rawCPU/time.Duration(len(cmds))), us(cmdCPU/time.Duration(len(cmds))))
	fmt.Printf("  today (issue 10): %s\n", c.today)
	var p99 time.Duration
	if c.rate > 0 {
		if p99, err = latency(ctx, cfg, nc, js, c); err != nil {
			return err
		}
	}
	c.record(t, ratio, p99)
	return nil
}

// setupStreams creates the streams, retrying while a new cluster elects
// its leaders.
func setupStreams(ctx context.Context, js jetstream.JetStream, replicas int) error {
	topology := es.DefaultTopology()
	topology.Partitions, topology.Replicas, topology.ResultsMaxAge = partitions, replicas, time.Hour
	deadline := time.Now().Add(time.Minute)
	for {
		op, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := es.Setup(op, js, topology)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("set up streams: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rawAppends appends total 300-byte events over n aggregate subjects with
// Nats-Expected-Last-Subject-Sequence, in waves of one event per aggregate,
// so that each wave's appends are independent and pipelined.
func rawAppends(ctx context.Context, js jetstream.JetStream, prefix string, n, total int) (float64, error) {
	last := make([]uint64, n)
	subjects := make([]string, n)
	for i := range subjects {
		subjects[i] = contract.EventSubject(prefix+strconv.Itoa(i), partitions)
	}
	body := make([]byte, 300)
	start := time.Now()
	for done := 0; done < total; {
		futures := make([]jetstream.PubAckFuture, 0, n)
		for i := 0; i < n && done+len(futures) < total; i++ {
			m := nats.NewMsg(subjects[i])
			m.Data = body
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last[i], 10))
			f, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute))
			if err != nil {
				return 0, err
			}
			futures = append(futures, f)
		}
		for i, f := range futures {
			select {
			case ack := <-f.Ok():
				last[i] = ack.Sequence
			case err := <-f.Err():
				return 0, fmt.Errorf("raw append: %w", err)
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		done += len(futures)
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

type throughputRun struct {
	rate               float64
	elapsed, published time.Duration
	usage              usage
}

// throughput publishes cmds as fast as the stream takes them and measures
// the time from the first publish to the last result. It checks every
// outcome against the workload's intent and that every command was
// acknowledged.
func throughput(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, agg *aggregatorProcess, cmds []workload.Command) (throughputRun, error) {
	want := make(map[string]bool, len(cmds))
	for _, c := range cmds {
		want[c.ID] = c.WantAccepted
	}
	var (
		mu    sync.Mutex
		wrong []string
		got   atomic.Int64
		last  atomic.Int64
	)
	done := make(chan struct{})
	sub, err := nc.Subscribe("orders.results.>", func(m *nats.Msg) {
		var r contract.Result
		if err := json.Unmarshal(m.Data, &r); err != nil || (r.Status == contract.StatusAccepted) != want[r.CommandID] {
			mu.Lock()
			wrong = append(wrong, string(m.Data))
			mu.Unlock()
		}
		last.Store(time.Now().UnixNano())
		if got.Add(1) == int64(len(cmds)) {
			close(done)
		}
	})
	if err != nil {
		return throughputRun{}, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	defer sub.Unsubscribe()

	if err := agg.mark(); err != nil {
		return throughputRun{}, err
	}
	start := time.Now()
	for _, c := range cmds {
		if _, err := js.PublishMsgAsync(c.Msg(), jetstream.WithStallWait(time.Minute)); err != nil {
			return throughputRun{}, fmt.Errorf("publish: %w", err)
		}
	}
	<-js.PublishAsyncComplete()
	published := time.Since(start)
	// Fail only when results stop coming, however long the run.
	for seen := int64(-1); ; {
		select {
		case <-done:
		case <-time.After(time.Minute):
			if n := got.Load(); n != seen {
				seen = n
				continue
			}
			return throughputRun{}, fmt.Errorf("only %d of %d results arrived", got.Load(), len(cmds))
		}
		break
	}
	u, err := agg.report()
	if err != nil {
		return throughputRun{}, err
	}
	elapsed := time.Duration(last.Load() - start.UnixNano())
	if len(wrong) > 0 {
		return throughputRun{}, fmt.Errorf("%d outcomes differ from the workload's intent, for example %s", len(wrong), wrong[0])
	}
	if err := waitAcknowledged(ctx, js); err != nil {
		return throughputRun{}, err
	}
	return throughputRun{rate: float64(len(cmds)) / elapsed.Seconds(), elapsed: elapsed, published: published, usage: u}, nil
}

// waitAcknowledged waits until the command work queue is empty.
func waitAcknowledged(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, contract.CommandsStream)
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		info, err := s.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(errors.New("commands left unacknowledged a minute after their results"), err)
		}
	}
}

// latency sends commands at c.rate and reports the time from publish to
// the result's arrival, with 200 orders in flight, each advancing one
// command at a time.
func latency(ctx context.Context, cfg config, nc *nats.Conn, js jetstream.JetStream, c cell) (time.Duration, error) {
	total := c.rate * cfg.seconds
	var cmds []workload.Command
	queue := make([][]workload.Command, 0, 200)
	for next := 0; len(cmds) < total; {
		for len(queue) < 200 {
			queue = append(queue, workload.Lifecycle(c.name+"-lat", next))
			next++
		}
		for i := 0; i < len(queue) && len(cmds) < total; i++ {
			cmds = append(cmds, queue[i][0])
			queue[i] = queue[i][1:]
		}
		queue = slices.DeleteFunc(queue, func(c []workload.Command) bool { return len(c) == 0 })
	}

	var mu sync.Mutex
	sent := make(map[string]time.Time, total)
	lat := make([]time.Duration, 0, total)
	done := make(chan struct{})
	sub, err := nc.Subscribe("orders.results.>", func(m *nats.Msg) {
		now := time.Now()
		id := m.Subject[len("orders.results."):]
		mu.Lock()
		defer mu.Unlock()
		if t, ok := sent[id]; ok {
			lat = append(lat, now.Sub(t))
			delete(sent, id)
			if len(lat) == total {
				close(done)
			}
		}
	})
	if err != nil {
		return 0, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	defer sub.Unsubscribe()

	interval := time.Second / time.Duration(c.rate)
	start := time.Now()
	for i, cmd := range cmds {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		mu.Lock()
		sent[cmd.ID] = time.Now()
		mu.Unlock()
		if _, err := js.PublishMsgAsync(cmd.Msg(), jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, err
		}
	}
	achieved := float64(total) / time.Since(start).Seconds()
	select {
	case <-done:
	case <-time.After(time.Minute):
		mu.Lock()
		defer mu.Unlock()
		return 0, fmt.Errorf("only %d of %d results arrived", len(lat), total)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	fmt.Printf("  latency at a fixed %d commands/s for %ds (sent at %.0f/s): p50 %s   p90 %s   p99 %s   max %s\n",
		c.rate, cfg.seconds, achieved, ms(pct(0.50)), ms(pct(0.90)), ms(pct(0.99)), ms(lat[len(lat)-1]))
	return pct(0.99), nil
}
