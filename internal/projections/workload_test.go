package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/es"
	"github.com/jetsource/jetsource/internal/natstest"
	"github.com/jetsource/jetsource/internal/order"
)

// script is the commands of one order, decided one at a time on its state
// so every event is one the aggregator could have stored.
type script struct {
	id       string
	commands []order.Command
	state    order.State
	version  int64
}

// fixedScript is an order with the given commands.
func fixedScript(id string, commands ...order.Command) *script {
	return &script{id: id, state: order.New(id), commands: commands}
}

// newScript writes a random but valid life for an order: items added and
// removed, then kept as a draft, canceled at some stage, or carried to
// delivery.
func newScript(rng *rand.Rand, id string) *script {
	s := &script{id: id, state: order.New(id)}
	currencies := []string{"USD", "EUR", "GBP"}
	create := order.CreateOrder{CustomerID: fmt.Sprintf("cust-%d", rng.IntN(40)), Currency: currencies[rng.IntN(3)]}
	if rng.IntN(4) == 0 { // created with items: several events in one append
		for range 1 + rng.IntN(3) {
			create.Items = append(create.Items, randomItem(rng))
		}
		create.Items = dedupe(create.Items)
	}
	s.commands = append(s.commands, create)
	for range rng.IntN(6) {
		s.commands = append(s.commands, randomItem(rng))
	}
	if rng.IntN(3) == 0 {
		s.commands = append(s.commands, order.RemoveItem{}) // product chosen when decided
		s.commands = append(s.commands, randomItem(rng))
	}
	s.commands = append(s.commands, randomItem(rng)) // at least one line at submit
	switch r := rng.IntN(10); {
	case r == 0: // stays a draft
	case r == 1:
		s.commands = append(s.commands, order.CancelOrder{Reason: "changed mind"})
	default:
		s.commands = append(s.commands, order.SubmitOrder{})
		switch r {
		case 2:
			s.commands = append(s.commands, order.CancelOrder{Reason: "not paid"})
		case 3:
			s.commands = append(s.commands, order.PayOrder{PaymentID: "pay-" + id, Method: "card"},
				order.CancelOrder{Reason: "out of stock"})
		case 4:
			s.commands = append(s.commands, order.PayOrder{PaymentID: "pay-" + id, Method: "invoice"})
		default:
			s.commands = append(s.commands, order.PayOrder{PaymentID: "pay-" + id, Method: "card"},
				order.ShipOrder{TrackingNumber: "trk-" + id, Carrier: "ups"})
			if r != 5 {
				s.commands = append(s.commands, order.DeliverOrder{})
			}
		}
	}
	return s
}

// randomItem adds a product at a price fixed per product, as the domain
// requires for a product already in the order.
func randomItem(rng *rand.Rand) order.AddItem {
	p := rng.IntN(12)
	return order.AddItem{ProductID: fmt.Sprintf("sku-%d", p), Quantity: int64(1 + rng.IntN(5)), UnitPriceCents: int64(199 + 100*p)}
}

func dedupe(items []order.AddItem) []order.AddItem {
	seen := map[string]bool{}
	var out []order.AddItem
	for _, it := range items {
		if !seen[it.ProductID] {
			seen[it.ProductID] = true
			out = append(out, it)
		}
	}
	return out
}

// next decides the script's next command and returns its events, or nil
// when the script is done.
func (s *script) next(rng *rand.Rand) ([]order.Event, string, bool) {
	for len(s.commands) > 0 {
		c := s.commands[0]
		s.commands = s.commands[1:]
		switch cmd := c.(type) {
		case order.RemoveItem:
			if cmd.ProductID != "" {
				break
			}
			if len(s.state.Items) == 0 {
				continue
			}
			c = order.RemoveItem{ProductID: s.state.Items[rng.IntN(len(s.state.Items))].ProductID}
		case order.PayOrder:
			if cmd.AmountCents == 0 {
				cmd.AmountCents = s.state.TotalCents
			}
			c = cmd
		}
		events, err := order.Decide(s.state, c)
		if err != nil {
			panic(fmt.Sprintf("workload: %s on %+v: %v", c.CommandType(), s.state, err))
		}
		s.state = order.Fold(s.state, events...)
		return events, c.CommandType(), true
	}
	return nil, "", false
}

// feeder appends workloads to the event store and remembers the stream
// sequence of every order's last event.
type feeder struct {
	store *es.Store
	rng   *rand.Rand
	last  map[string]uint64
	clock time.Time
	cmds  int
}

func newFeeder(store *es.Store, seed uint64) *feeder {
	return &feeder{
		store: store,
		rng:   rand.New(rand.NewPCG(seed, seed+1)),
		last:  map[string]uint64{},
		clock: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC),
	}
}

// run appends the scripts' commands interleaved at random, each command's
// events in one append, with timestamps a few minutes apart so that the
// workload spans several days. It returns how many events it appended.
func (f *feeder) run(t testing.TB, scripts ...*script) int {
	t.Helper()
	active := slices.Clone(scripts)
	n := 0
	for len(active) > 0 {
		i := f.rng.IntN(len(active))
		s := active[i]
		events, commandType, ok := s.next(f.rng)
		if !ok {
			active = slices.Delete(active, i, i+1)
			continue
		}
		f.append(t, s, commandType, events)
		n += len(events)
	}
	return n
}

// step appends the next command of one script.
func (f *feeder) step(t testing.TB, s *script) {
	t.Helper()
	events, commandType, ok := s.next(f.rng)
	if !ok {
		t.Fatalf("script of %s is done", s.id)
	}
	f.append(t, s, commandType, events)
}

func (f *feeder) append(t testing.TB, s *script, commandType string, events []order.Event) {
	t.Helper()
	if err := f.tryAppend(s, commandType, events); err != nil {
		t.Fatal(err)
	}
}

// tryAppend is append for goroutines other than the test's.
func (f *feeder) tryAppend(s *script, commandType string, events []order.Event) error {
	f.cmds++
	f.clock = f.clock.Add(time.Duration(1+f.rng.IntN(900)) * time.Second).Add(time.Duration(f.rng.IntN(1e6)) * time.Microsecond)
	cmdID := fmt.Sprintf("cmd-%d", f.cmds)
	envs := make([]contract.Event, len(events))
	for i, e := range events {
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		s.version++
		envs[i] = contract.Event{
			ID: es.NewEventID(time.Now()), AggregateType: order.AggregateType, AggregateID: s.id, Type: e.EventType(),
			SchemaVersion: contract.SchemaVersion(e.EventType()), Version: s.version, Data: data,
			Metadata: contract.EventMetadata{UserID: "user-" + commandType, CorrelationID: "corr-" + s.id, CausationID: cmdID,
				Timestamp: contract.Time{Time: f.clock}},
		}
	}
	seq, err := f.store.Append(context.Background(), s.id, f.last[s.id], envs)
	if err != nil {
		return fmt.Errorf("append %s to %s: %w", commandType, s.id, err)
	}
	f.last[s.id] = seq
	return nil
}

// feed appends the scripts' commands like run, one every interval at most,
// until stop is closed or the scripts are done, and returns how many
// events it appended. Unlike run it may be called from any goroutine, as
// long as the test leaves the feeder alone until it returns.
func (f *feeder) feed(stop <-chan struct{}, every time.Duration, scripts ...*script) (int, error) {
	active := slices.Clone(scripts)
	tick := time.NewTicker(every)
	defer tick.Stop()
	n := 0
	for len(active) > 0 {
		select {
		case <-stop:
			return n, nil
		case <-tick.C:
		}
		i := f.rng.IntN(len(active))
		events, commandType, ok := active[i].next(f.rng)
		if !ok {
			active = slices.Delete(active, i, i+1)
			continue
		}
		if err := f.tryAppend(active[i], commandType, events); err != nil {
			return n, err
		}
		n += len(events)
	}
	return n, nil
}

// scripts makes n order scripts with ids prefix-0 .. prefix-(n-1).
func (f *feeder) scripts(prefix string, n int) []*script {
	out := make([]*script, n)
	for i := range out {
		out[i] = newScript(f.rng, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// lastByPartition is the sequence of the newest event of each partition.
func (f *feeder) lastByPartition() map[int]uint64 {
	out := map[int]uint64{}
	for id, seq := range f.last {
		p := contract.Partition(id, natstest.Partitions)
		out[p] = max(out[p], seq)
	}
	return out
}

// storedEvents reads back every order's events as stored, with their
// sequences: the input of the expected read models.
func storedEvents(t testing.TB, store *es.Store, orderIDs []string) map[string][]contract.Event {
	t.Helper()
	out := map[string][]contract.Event{}
	for _, id := range orderIDs {
		events, err := store.Read(context.Background(), id, 0)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = events
	}
	return out
}

// expected is the read models as a fold of the stored events computes
// them, each row rendered as one line so that comparisons print readably.
type expected struct {
	orders, items, history, sales []string
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func str(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orderLine(id, customer, currency, status string, total int64, items int, paymentID string, paid *int64,
	method, tracking, carrier, reason string, created, submitted, paidAt, shipped, delivered, canceled, updated time.Time,
	version, lastSeq int64) string {
	paidS := "-"
	if paid != nil {
		paidS = fmt.Sprint(*paid)
	}
	return strings.Join([]string{id, customer, currency, status, fmt.Sprint(total), fmt.Sprint(items), str(paymentID), paidS,
		str(method), str(tracking), str(carrier), str(reason), ts(created), ts(submitted), ts(paidAt), ts(shipped),
		ts(delivered), ts(canceled), ts(updated), fmt.Sprint(version), fmt.Sprint(lastSeq)}, "|")
}

func canonicalJSON(t testing.TB, data []byte) string {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// fold computes the expected rows. skip lists event ids the read models
// must not see (skipped dead letters).
func fold(t testing.TB, stored map[string][]contract.Event, skip map[string]bool) expected {
	t.Helper()
	var exp expected
	type dayCur struct {
		day time.Time
		cur string
	}
	type sums struct{ paid, revenue, canceled int64 }
	sales := map[dayCur]*sums{}
	for id, events := range stored {
		s := order.New(id)
		var created, submitted, paidAt, shipped, delivered, canceled, updated time.Time
		var lastSeq int64
		for _, e := range events {
			at := e.Metadata.Timestamp.UTC()
			exp.history = append(exp.history, strings.Join([]string{e.ID, e.AggregateID, fmt.Sprint(e.Version),
				fmt.Sprint(e.Sequence), e.Type, fmt.Sprint(e.SchemaVersion), canonicalJSON(t, e.Data),
				str(e.Metadata.UserID), str(e.Metadata.CorrelationID), str(e.Metadata.CausationID), ts(at)}, "|"))
			if skip[e.ID] {
				continue
			}
			data, err := order.ParseEvent(e.Type, e.Data)
			if err != nil {
				t.Fatal(err)
			}
			s = order.Evolve(s, data)
			day := dayCur{at.Truncate(24 * time.Hour), s.Currency}
			switch d := data.(type) {
			case order.OrderCreated:
				created = at
			case order.OrderSubmitted:
				submitted = at
			case order.OrderPaid:
				paidAt = at
				if sales[day] == nil {
					sales[day] = &sums{}
				}
				sales[day].paid++
				sales[day].revenue += d.AmountCents
			case order.OrderShipped:
				shipped = at
			case order.OrderDelivered:
				delivered = at
			case order.OrderCanceled:
				canceled = at
				if sales[day] == nil {
					sales[day] = &sums{}
				}
				sales[day].canceled++
			}
			updated, lastSeq = at, int64(e.Sequence)
		}
		if !s.Exists() {
			continue
		}
		var paid *int64
		if s.PaymentID != "" {
			paid = &s.PaidCents
		}
		// Evolve's version counts applied events; the row's version is the
		// aggregate version of the last one.
		version := int64(0)
		for _, e := range events {
			if !skip[e.ID] {
				version = e.Version
			}
		}
		exp.orders = append(exp.orders, orderLine(id, s.CustomerID, s.Currency, string(s.Status), s.TotalCents, len(s.Items),
			s.PaymentID, paid, s.PaymentMethod, s.TrackingNumber, s.Carrier, s.CancelReason,
			created, submitted, paidAt, shipped, delivered, canceled, updated, version, lastSeq))
		for _, it := range s.Items {
			exp.items = append(exp.items, fmt.Sprintf("%s|%s|%d|%d", id, it.ProductID, it.Quantity, it.UnitPriceCents))
		}
	}
	for k, v := range sales {
		exp.sales = append(exp.sales, fmt.Sprintf("%s|%s|%d|%d|%d", k.day.Format(time.DateOnly), k.cur, v.paid, v.revenue, v.canceled))
	}
	for _, s := range [][]string{exp.orders, exp.items, exp.history, exp.sales} {
		slices.Sort(s)
	}
	return exp
}

// diff describes how got differs from want, or returns "" if they match.
func diff(name string, got, want []string) string {
	if slices.Equal(got, want) {
		return ""
	}
	g, w := map[string]bool{}, map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	for _, s := range want {
		w[s] = true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d rows, want %d\n", name, len(got), len(want))
	shown := 0
	for _, s := range want {
		if !g[s] && shown < 5 {
			fmt.Fprintf(&b, "  missing    %s\n", s)
			shown++
		}
	}
	shown = 0
	for _, s := range got {
		if !w[s] && shown < 5 {
			fmt.Fprintf(&b, "  unexpected %s\n", s)
			shown++
		}
	}
	return b.String()
}
