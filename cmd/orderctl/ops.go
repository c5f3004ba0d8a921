package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/jetsource/jetsource/client"
	clientreadmodel "github.com/jetsource/jetsource/client/readmodel"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// projectionFlag is --projection: a read model's name, checked as it is
// parsed.
type projectionFlag struct{ name string }

func (p *projectionFlag) String() string { return p.name }
func (p *projectionFlag) Type() string   { return "name" }

func (p *projectionFlag) Set(name string) error {
	if !slices.Contains(readmodel.Names(), name) {
		return &valueError{"want " + projectionNames()}
	}
	p.name = name
	return nil
}

// Projection returns the read model; without --projection, a usage error.
func (p *projectionFlag) Projection() (projections.Projection, error) {
	if p.name == "" {
		return nil, usagef("--projection is required: %s", projectionNames())
	}
	return readmodel.New(p.name)
}

func projectionNames() string {
	names := readmodel.Names()
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

func (p *projectionFlag) define(c *cobra.Command, usage string) {
	c.Flags().Var(p, "projection", usage+" ("+projectionNames()+")")
}

// lagReport is one projection's lag, as lag --json prints it: the total
// counts every partition's events behind, and the seconds behind of the
// partition furthest behind.
type lagReport struct {
	Projection       string         `json:"projection"`
	EventsBehind     uint64         `json:"eventsBehind"`
	SecondsBehind    float64        `json:"secondsBehind"`
	PartitionsBehind int            `json:"partitionsBehind"`
	Partitions       []partitionLag `json:"partitions"`
	LastEventAt      *time.Time     `json:"lastEventAt,omitempty"`
}

type partitionLag struct {
	Partition     int        `json:"partition"`
	Cursor        uint64     `json:"cursor"`
	LastEventAt   *time.Time `json:"lastEventAt,omitempty"`
	EventsBehind  uint64     `json:"eventsBehind"`
	SecondsBehind float64    `json:"secondsBehind"`
	// StreamLastSequence is set when the events stream no longer holds the
	// event at the cursor: events the projection projected are missing.
	StreamLastSequence *uint64 `json:"eventsMissingStreamEndsAt,omitempty"`
}

func lagReports(ctx context.Context, admin *projections.Admin, names []string) ([]lagReport, error) {
	out := make([]lagReport, 0, len(names))
	for _, name := range names {
		lags, err := admin.Lag(ctx, name)
		if err != nil {
			return nil, err
		}
		r := lagReport{Projection: name, Partitions: make([]partitionLag, len(lags))}
		for i, l := range lags {
			p := partitionLag{Partition: l.Partition, Cursor: l.Cursor, EventsBehind: l.EventsBehind, SecondsBehind: l.SecondsBehind}
			if !l.LastEventAt.IsZero() {
				p.LastEventAt = &l.LastEventAt
				if r.LastEventAt == nil || l.LastEventAt.After(*r.LastEventAt) {
					r.LastEventAt = p.LastEventAt
				}
			}
			if l.Loss != nil {
				p.StreamLastSequence = &l.Loss.StreamLast
			}
			r.Partitions[i] = p
			r.EventsBehind += l.EventsBehind
			r.SecondsBehind = max(r.SecondsBehind, l.SecondsBehind)
			if l.EventsBehind > 0 {
				r.PartitionsBehind++
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func cmdLag(s *session) *cobra.Command {
	var (
		p                  projectionFlag
		perPartition, asJS bool
	)
	c := &cobra.Command{
		Use:   "lag",
		Short: "how far each projection is behind the event store",
		Long: `Shows how far each projection (or one) is behind the event store: events not yet
projected, the age of the oldest of them, how many partitions are behind, and
the time of the newest event projected. --partitions shows every partition's
cursor instead; --json prints one object per projection, partitions included.

If the events stream no longer holds an event a projection has projected (a
lost tail, a restored older backup, a recreated stream), the projection has
stopped: lag names the partitions (EVENTS MISSING) and fails (exit code 1)
until the projection is rebuilt.`,
		Example: `  orderctl lag
  orderctl lag --projection order_summary --partitions
  orderctl lag --json | jq '{projection, eventsBehind}'`,
		Args: args(0),
	}
	c.RunE = s.runE(func(ctx context.Context, _ []string) error {
		names := readmodel.Names()
		if p.name != "" {
			names = []string{p.name}
		}
		admin, err := s.Admin(ctx)
		if err != nil {
			return err
		}
		reports, err := lagReports(ctx, admin, names)
		if err != nil {
			return err
		}
		if asJS {
			if err := printJSONLines(s.stdout, reports); err != nil {
				return err
			}
			return eventsMissing(reports)
		}
		w := newTable(s.stdout)
		if perPartition {
			fmt.Fprintln(w, "PROJECTION\tPARTITION\tCURSOR\tEVENTS BEHIND\tSECONDS BEHIND\tLAST EVENT AT\tEVENTS MISSING")
			for _, r := range reports {
				for _, p := range r.Partitions {
					missing := "-"
					if p.StreamLastSequence != nil {
						missing = fmt.Sprintf("yes: the stream ends at %d or holds another event at the cursor", *p.StreamLastSequence)
					}
					fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%.1f\t%s\t%s\n", r.Projection, p.Partition, p.Cursor, p.EventsBehind, p.SecondsBehind,
						timeOrDash(p.LastEventAt), missing)
				}
			}
		} else {
			fmt.Fprintln(w, "PROJECTION\tEVENTS BEHIND\tSECONDS BEHIND\tPARTITIONS BEHIND\tLAST EVENT AT\tEVENTS MISSING")
			for _, r := range reports {
				fmt.Fprintf(w, "%s\t%d\t%.1f\t%d of %d\t%s\t%s\n", r.Projection, r.EventsBehind, r.SecondsBehind, r.PartitionsBehind, len(r.Partitions),
					timeOrDash(r.LastEventAt), missingPartitions(r))
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return eventsMissing(reports)
	})
	p.define(c, "only this projection")
	c.Flags().BoolVar(&perPartition, "partitions", false, "show every partition")
	c.Flags().BoolVar(&asJS, "json", false, "print one JSON object per projection, with its partitions")
	return c
}

// missingPartitions names the partitions of r whose cursors point at events
// the stream no longer holds, "-" if none.
func missingPartitions(r lagReport) string {
	var ps []string
	for _, p := range r.Partitions {
		if p.StreamLastSequence != nil {
			ps = append(ps, strconv.Itoa(p.Partition))
		}
	}
	if len(ps) == 0 {
		return "-"
	}
	return "yes: partitions " + strings.Join(ps, ", ")
}

// eventsMissing is an error naming the projections whose cursors point at
// events the stream no longer holds: they have stopped until rebuilt.
func eventsMissing(reports []lagReport) error {
	var lost []string
	for _, r := range reports {
		for _, p := range r.Partitions {
			if p.StreamLastSequence != nil {
				lost = append(lost, fmt.Sprintf("%s partition %d (cursor %d, stream ends at %d): the projection has stopped; run orderctl rebuild --projection %s",
					r.Projection, p.Partition, p.Cursor, *p.StreamLastSequence, r.Projection))
				break
			}
		}
	}
	if len(lost) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", projections.ErrEventsMissing, strings.Join(lost, "; "))
}

// checkpoint is a partition's cursor as checkpoints --json prints it.
type checkpoint struct {
	Projection  string     `json:"projection"`
	Partition   int        `json:"partition"`
	Cursor      uint64     `json:"cursor"`
	LastEventAt *time.Time `json:"lastEventAt,omitempty"`
	UpdatedAt   *time.Time `json:"updatedAt,omitempty"`
}

func cmdCheckpoints(s *session) *cobra.Command {
	var (
		p      projectionFlag
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "checkpoints --projection NAME",
		Short: "a projection's cursor per partition",
		Long: `Shows a projection's cursor per partition: the stream sequence of the last event
projected, that event's time, and when the cursor last moved. A partition that
never ran has none.`,
		Example: `  orderctl checkpoints --projection sales_daily
  orderctl checkpoints --projection order_summary --json`,
		Args: args(0),
	}
	c.RunE = s.runE(func(ctx context.Context, _ []string) error {
		proj, err := p.Projection()
		if err != nil {
			return err
		}
		admin, err := s.Admin(ctx)
		if err != nil {
			return err
		}
		cps, err := admin.Checkpoints(ctx, proj.Name())
		if err != nil {
			return err
		}
		rows := make([]checkpoint, s.cfg.Streams.Partitions)
		for i := range rows {
			rows[i] = checkpoint{Projection: proj.Name(), Partition: i}
			if cp, ok := cps[i]; ok {
				rows[i].Cursor, rows[i].UpdatedAt = cp.LastSequence, &cp.UpdatedAt
				if !cp.LastEventAt.IsZero() {
					rows[i].LastEventAt = &cp.LastEventAt
				}
			}
		}
		if asJSON {
			return printJSONLines(s.stdout, rows)
		}
		w := newTable(s.stdout)
		fmt.Fprintln(w, "PARTITION\tCURSOR\tLAST EVENT AT\tUPDATED AT")
		for _, r := range rows {
			updated := "never ran"
			if r.UpdatedAt != nil {
				updated = r.UpdatedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(w, "%d\t%d\t%s\t%s\n", r.Partition, r.Cursor, timeOrDash(r.LastEventAt), updated)
		}
		return w.Flush()
	})
	p.define(c, "the projection")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per partition")
	return c
}

func timeOrDash(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func cmdDLQ(s *session) *cobra.Command {
	return group("dlq", "list, retry and skip a projection's dead letters",
		dlqList(s), dlqResolve(s, true), dlqResolve(s, false))
}

// deadLetter is a dead letter as dlq list --json prints it: the body as
// JSON when it is JSON (events are), else as a string.
type deadLetter struct {
	ID             int64           `json:"id"`
	Projection     string          `json:"projection"`
	Partition      int             `json:"partition"`
	StreamSequence uint64          `json:"streamSequence"`
	Subject        string          `json:"subject"`
	OrderID        string          `json:"orderId"`
	EventID        string          `json:"eventId"`
	EventType      string          `json:"eventType"`
	EventVersion   int64           `json:"eventVersion"`
	Status         string          `json:"status"`
	Attempts       int             `json:"attempts"`
	Error          string          `json:"error"`
	Body           json.RawMessage `json:"body"`
	CreatedAt      time.Time       `json:"createdAt"`
	UpdatedAt      time.Time       `json:"updatedAt"`
}

var deadLetterStatuses = []string{string(projections.StatusFailed), string(projections.StatusParked),
	string(projections.StatusRetried), string(projections.StatusSkipped), string(projections.StatusSuperseded)}

func dlqList(s *session) *cobra.Command {
	var (
		p               projectionFlag
		status, orderID string
		after           int64
		limit           int
		asJSON          bool
	)
	c := &cobra.Command{
		Use:   "list",
		Short: "list dead letters",
		Long: `Lists dead letters, oldest first: events a projection failed to apply (failed)
and the later events of their orders held back behind them (parked), and the
ones already resolved (retried, skipped, superseded by a rebuild). A full page
says how to get the next.`,
		Example: `  orderctl dlq list --status failed
  orderctl dlq list --projection order_summary --order ord-1
  orderctl dlq list --json | jq .body`,
		Args: args(0),
	}
	c.RunE = s.runE(func(ctx context.Context, _ []string) error {
		switch {
		case status != "" && !slices.Contains(deadLetterStatuses, status):
			return usagef("--status %q: want %s", status, strings.Join(deadLetterStatuses, ", "))
		case limit < 1:
			return usagef("--limit %d: want at least 1", limit)
		}
		admin, err := s.Admin(ctx)
		if err != nil {
			return err
		}
		letters, err := admin.DeadLetters(ctx, projections.DeadLetterQuery{Projection: p.name,
			Status: projections.DeadLetterStatus(status), OrderID: orderID, AfterID: after, Limit: limit})
		if err != nil {
			return err
		}
		if len(letters) == limit {
			fmt.Fprintf(s.stderr, "orderctl dlq list: showing the first %d; the next page: --after %d\n", limit, letters[len(letters)-1].ID)
		}
		if asJSON {
			rows := make([]deadLetter, len(letters))
			for i, l := range letters {
				rows[i] = jsonDeadLetter(l)
			}
			return printJSONLines(s.stdout, rows)
		}
		w := newTable(s.stdout)
		fmt.Fprintln(w, "ID\tPROJECTION\tPARTITION\tSEQUENCE\tORDER\tVERSION\tTYPE\tSTATUS\tATTEMPTS\tUPDATED AT\tERROR")
		for _, l := range letters {
			fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", l.ID, l.Projection, l.Partition, l.StreamSequence,
				l.OrderID, l.EventVersion, l.EventType, l.Status, l.Attempts, l.UpdatedAt.UTC().Format(time.RFC3339), l.Error)
		}
		return w.Flush()
	})
	f := c.Flags()
	p.define(c, "only this projection")
	f.StringVar(&status, "status", "", "only this status: "+strings.Join(deadLetterStatuses, ", "))
	f.StringVar(&orderID, "order", "", "only this order")
	f.Int64Var(&after, "after", 0, "only ids above this one (the next page)")
	f.IntVar(&limit, "limit", 100, "at most this many")
	f.BoolVar(&asJSON, "json", false, "print one JSON object per dead letter, with the event")
	return c
}

func jsonDeadLetter(l projections.DeadLetter) deadLetter {
	body := json.RawMessage(l.Body)
	if !json.Valid(body) {
		body, _ = json.Marshal(string(l.Body)) // a string always encodes
	}
	return deadLetter{ID: l.ID, Projection: l.Projection, Partition: l.Partition, StreamSequence: l.StreamSequence,
		Subject: l.Subject, OrderID: l.OrderID, EventID: l.EventID, EventType: l.EventType, EventVersion: l.EventVersion,
		Status: string(l.Status), Attempts: l.Attempts, Error: l.Error, Body: body, CreatedAt: l.CreatedAt, UpdatedAt: l.UpdatedAt}
}

// dlqResolve is dlq retry or dlq skip: it resolves a failed dead letter and
// prints what happened to it and to the events of its order parked behind
// it.
func dlqResolve(s *session, retry bool) *cobra.Command {
	verb, done, does := "skip", "skipped", "drops a failed event (the read model never sees it)"
	if retry {
		verb, done, does = "retry", "retried", "applies a failed event again"
	}
	var p projectionFlag
	c := &cobra.Command{
		Use:   verb + " --projection NAME <id>",
		Short: verb + " a failed dead letter, then apply the events parked behind it",
		Long: strings.ToUpper(does[:1]) + does[1:] + `, then the events of its order parked
behind it, in order. If an event fails again it becomes the failed dead letter
and the command fails (exit code 1); what was applied before it stays applied.
The ids are orderctl dlq list's.`,
		Example: "  orderctl dlq " + verb + " --projection order_summary 42",
		Args:    args(1, "<id>"),
	}
	c.RunE = s.runE(func(ctx context.Context, args []string) error {
		id, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil || id < 1 {
			return usagef("dead letter id %q: want a positive whole number (see orderctl dlq list)", args[0])
		}
		proj, err := p.Projection()
		if err != nil {
			return err
		}
		admin, err := s.Admin(ctx)
		if err != nil {
			return err
		}
		resolve := admin.Skip
		if retry {
			resolve = admin.Retry
		}
		res, err := resolve(ctx, proj, id)
		if err != nil && !errors.Is(err, projections.ErrStillFailing) {
			return err
		}
		if res.Failed != 0 {
			fmt.Fprintf(s.stdout, "dead letter %d of %s %s: %s applied, then dead letter %d failed again; %s still parked\n",
				id, proj.Name(), done, eventCount(res.Applied), res.Failed, eventCount(res.Parked))
			return fmt.Errorf("%w; fix the cause and retry dead letter %d, or skip it", err, res.Failed)
		}
		fmt.Fprintf(s.stdout, "dead letter %d of %s %s: %s applied; the order is unblocked\n", id, proj.Name(), done, eventCount(res.Applied))
		return nil
	})
	p.define(c, "the dead letter's projection")
	return c
}

func eventCount(n int) string {
	if n == 1 {
		return "1 event"
	}
	return strconv.Itoa(n) + " events"
}

func cmdRebuild(s *session) *cobra.Command {
	var p projectionFlag
	c := &cobra.Command{
		Use:   "rebuild --projection NAME",
		Short: "rebuild a projection into fresh tables and swap them in (blue/green)",
		Long: `Projects every event from the first into fresh copies of a projection's tables
while the live tables keep serving, then swaps the copies in. Progress goes to
stderr. Ctrl-C stops it and leaves the live tables as they were (the next
rebuild drops the unfinished copy).`,
		Example: "  orderctl rebuild --projection order_summary",
		Args:    args(0),
	}
	c.RunE = s.runE(func(ctx context.Context, _ []string) error {
		proj, err := p.Projection()
		if err != nil {
			return err
		}
		admin, err := s.Admin(ctx)
		if err != nil {
			return err
		}
		line := newStatusLine(s.stderr, 5*time.Second)
		pr, err := admin.Rebuild(ctx, proj, projections.RebuildOptions{Progress: func(pr projections.RebuildProgress) {
			line.Update(rebuildProgress(pr))
		}})
		line.Finish()
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d events; the live tables are unchanged and keep serving (the next rebuild drops the unfinished copy)", pr.Done)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "rebuilt %s: %d events in %s (%.0f events/s); the new tables are live\n",
			proj.Name(), pr.Done, pr.Elapsed.Round(time.Millisecond), pr.Rate)
		return nil
	})
	p.define(c, "the projection to rebuild")
	return c
}

func rebuildProgress(pr projections.RebuildProgress) string {
	if pr.Swapped {
		return fmt.Sprintf("rebuild %s: %d events, swapped in", pr.Projection, pr.Done)
	}
	text := fmt.Sprintf("rebuild %s: %d/%d events (%.0f%%), %.0f events/s", pr.Projection, pr.Done, pr.Total, percent(pr.Done, pr.Total), pr.Rate)
	if pr.Rate > 0 && pr.Total > pr.Done {
		eta := time.Duration(float64(pr.Total-pr.Done) / pr.Rate * float64(time.Second))
		text += ", about " + eta.Round(time.Second).String() + " left"
	}
	return text
}

func percent(done, total uint64) float64 {
	if total == 0 {
		return 100
	}
	return 100 * float64(done) / float64(total)
}

func cmdWait(s *session) *cobra.Command {
	var (
		p       projectionFlag
		timeout time.Duration
	)
	c := &cobra.Command{
		Use:   "wait --projection NAME <commandId>",
		Short: "wait until a projection shows a command's effect (read-your-writes)",
		Long: `Waits for a command's result, then until the projection has projected its
events, so that the read model shows them. A rejected command has nothing to
wait for (exit code 3). If the projection dead-lettered one of the order's
events up to the command's, the read model does not show the command: wait
says which dead letter and fails (exit code 1).`,
		Example: `  orderctl send --id cmd-7 ord-1 SubmitOrder
  orderctl wait --projection order_summary cmd-7`,
		Args: args(1, "<commandId>"),
	}
	c.RunE = s.runE(func(ctx context.Context, args []string) error {
		id := args[0]
		proj, err := p.Projection()
		if err != nil {
			return err
		}
		if err := contract.ValidateID("commandId", id); err != nil {
			return usageError{err}
		}
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		partitions, err := s.Partitions(ctx)
		if err != nil {
			return err
		}
		cl, err := s.Client()
		if err != nil {
			return err
		}
		pool, err := s.DB(ctx)
		if err != nil {
			return err
		}
		r, err := cl.Await(ctx, id)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no result for command %s within %s: it is still queued (is an aggregator running?) or was never sent; check with orderctl result %s", id, timeout, id)
		}
		if err != nil {
			return err
		}
		if r.Status == contract.StatusRejected {
			fmt.Fprintf(s.stdout, "command %s was rejected (%s: %s); nothing to wait for\n", r.CommandID, r.Error.Code, r.Error.Message)
			return &client.RejectedError{Result: r}
		}
		start := time.Now()
		err = clientreadmodel.WaitForProjection(ctx, pool, s.cfg.Schema, proj.Name(), partitions, r)
		var dead *clientreadmodel.DeadLetteredError
		switch {
		case errors.As(err, &dead):
			return fmt.Errorf("%w; see orderctl dlq list --projection %s --order %s, then retry or skip it", err, proj.Name(), r.OrderID)
		case errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("%s has not projected command %s within %s: is its projector running? orderctl lag --projection %s shows how far behind it is",
				proj.Name(), id, timeout, proj.Name())
		case err != nil:
			return err
		}
		fmt.Fprintf(s.stdout, "%s has projected command %s (order %s, stream sequence %d); waited %s\n",
			proj.Name(), r.CommandID, r.OrderID, r.StreamSequence, time.Since(start).Round(time.Microsecond))
		return nil
	})
	p.define(c, "the projection to wait for")
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the result and the projection")
	return c
}
