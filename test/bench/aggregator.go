package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/workload"
)

// benchThroughput measures raw conditional appends, then the aggregator end
// to end (publish to stored result) on the same workload size.
func benchThroughput(ctx context.Context, orders int) error {
	cmds := workload.Waves("tp", orders)
	rule(fmt.Sprintf("Aggregator throughput: %d orders, %d commands (mixed lifecycle)", orders, len(cmds)))

	base, err := rawAppends(ctx, orders, len(cmds))
	if err != nil {
		return err
	}
	fmt.Printf("  baseline: raw JetStream conditional appends, pipelined   %9.0f appends/s\n", base)

	e, err := newEnv(ctx, true)
	if err != nil {
		return err
	}
	defer e.close()
	var got, rejected atomic.Int64
	done := make(chan struct{})
	var last atomic.Int64
	sub, err := e.nc.Subscribe("orders.results.>", func(m *nats.Msg) {
		var r es.Result
		if json.Unmarshal(m.Data, &r) == nil && r.Status == es.StatusRejected {
			rejected.Add(1)
		}
		last.Store(time.Now().UnixNano())
		if got.Add(1) == int64(len(cmds)) {
			close(done)
		}
	})
	if err != nil {
		return err
	}
	_ = sub.SetPendingLimits(-1, -1)
	defer sub.Unsubscribe()

	start := time.Now()
	for _, c := range cmds {
		if _, err := e.js.PublishMsgAsync(c.Msg()); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("publishing did not complete")
	}
	published := time.Since(start)
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		return fmt.Errorf("only %d of %d results arrived", got.Load(), len(cmds))
	}
	elapsed := time.Duration(last.Load() - start.UnixNano())
	rate := float64(len(cmds)) / elapsed.Seconds()
	fmt.Printf("  aggregator end to end (publish → stored result)            %9.0f commands/s  (%d commands in %s; publishing took %s)\n",
		rate, len(cmds), elapsed.Round(time.Millisecond), published.Round(time.Millisecond))
	fmt.Printf("  rejected as the workload intends (wrong payment amount)      %9d\n", rejected.Load())
	fmt.Printf("  ratio end to end / raw appends                               %9.2f   (target: ≥ 5,000 commands/s end to end)\n", rate/base)
	return nil
}

// rawAppends appends total events over n order subjects with
// Nats-Expected-Last-Subject-Sequence, in waves of one event per order so
// that each wave's appends are independent and can be pipelined.
func rawAppends(ctx context.Context, n, total int) (float64, error) {
	e, err := newEnv(ctx, false)
	if err != nil {
		return 0, err
	}
	defer e.close()
	last := make([]uint64, n)
	body := make([]byte, 380) // about the size of an ItemAdded envelope
	start := time.Now()
	done := 0
	for done < total {
		futures := make([]jetstream.PubAckFuture, 0, n)
		for i := 0; i < n && done+len(futures) < total; i++ {
			m := nats.NewMsg(es.EventSubject("raw-"+strconv.Itoa(i), partitions))
			m.Data = body
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last[i], 10))
			f, err := e.js.PublishMsgAsync(m)
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
			}
		}
		done += len(futures)
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

// benchLatency sends commands at a fixed rate and reports the time from
// publish to stored result.
func benchLatency(ctx context.Context, rate, seconds int) error {
	total := rate * seconds
	rule(fmt.Sprintf("Aggregator latency at a fixed %d commands/s for %ds", rate, seconds))
	e, err := newEnv(ctx, true)
	if err != nil {
		return err
	}
	defer e.close()

	// Keep 200 orders in flight, each advancing one command at a time.
	var cmds []workload.Command
	queue := make([][]workload.Command, 0, 200)
	next := 0
	for len(cmds) < total {
		for len(queue) < 200 {
			queue = append(queue, workload.Lifecycle("lat", next))
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
	sub, err := e.nc.Subscribe("orders.results.>", func(m *nats.Msg) {
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
		return err
	}
	_ = sub.SetPendingLimits(-1, -1)
	defer sub.Unsubscribe()

	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i, c := range cmds {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		mu.Lock()
		sent[c.ID] = time.Now()
		mu.Unlock()
		if _, err := e.js.PublishMsgAsync(c.Msg()); err != nil {
			return err
		}
	}
	achieved := float64(total) / time.Since(start).Seconds()
	select {
	case <-done:
	case <-time.After(time.Minute):
		return fmt.Errorf("only %d of %d results arrived", len(lat), total)
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	fmt.Printf("  sent %d commands at %.0f/s\n", total, achieved)
	fmt.Printf("  p50 %s   p90 %s   p99 %s   max %s   (target: p99 ≤ 25ms)\n",
		ms(pct(0.50)), ms(pct(0.90)), ms(pct(0.99)), ms(lat[len(lat)-1]))
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
