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

	"github.com/jetsource/jetsource/client"
	clientreadmodel "github.com/jetsource/jetsource/client/readmodel"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/projections"
	"github.com/jetsource/jetsource/internal/projections/readmodel"
)

// projection looks a read model up by name; an unknown name is a usage
// error.
func projection(name string) (projections.Projection, error) {
	if name == "" {
		return nil, usagef("--projection is required (%s)", strings.Join(readmodel.Names(), ", "))
	}
	p, err := readmodel.New(name)
	if err != nil {
		return nil, usageError{err}
	}
	return p, nil
}

// lagReport is one projection's lag, as lag --json prints it: the total
// counts every partition's events behind, and the seconds behind of the
// partition furthest behind.
type lagReport struct {
	Projection    string         `json:"projection"`
	EventsBehind  uint64         `json:"eventsBehind"`
	SecondsBehind float64        `json:"secondsBehind"`
	Partitions    []partitionLag `json:"partitions"`
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
			}
			if l.Loss != nil {
				p.StreamLastSequence = &l.Loss.StreamLast
			}
			r.Partitions[i] = p
			r.EventsBehind += l.EventsBehind
			r.SecondsBehind = max(r.SecondsBehind, l.SecondsBehind)
		}
		out = append(out, r)
	}
	return out, nil
}

func cmdLag(ctx context.Context, s *session, args []string) error {
	fs := newFlags("lag")
	name := fs.String("projection", "", "one projection (default: all)")
	asJSON := fs.Bool("json", false, "print one JSON object per projection")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	names := readmodel.Names()
	if *name != "" {
		if _, err := projection(*name); err != nil {
			return err
		}
		names = []string{*name}
	}
	admin, err := s.Admin(ctx)
	if err != nil {
		return err
	}
	reports, err := lagReports(ctx, admin, names)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(s.stdout)
		for _, r := range reports {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return eventsMissing(reports)
	}
	w := newTable(s.stdout)
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
		fmt.Fprintf(w, "%s\ttotal\t\t%d\t%.1f\t\t\n", r.Projection, r.EventsBehind, r.SecondsBehind)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return eventsMissing(reports)
}

// eventsMissing is an error naming the projections whose cursors point at
// events the stream no longer holds: they have stopped until rebuilt.
func eventsMissing(reports []lagReport) error {
	var lost []string
	for _, r := range reports {
		for _, p := range r.Partitions {
			if p.StreamLastSequence != nil {
				lost = append(lost, fmt.Sprintf("%s partition %d (cursor %d, stream ends at %d): the projection has stopped; run orderctl rebuild %s",
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

func cmdCheckpoints(ctx context.Context, s *session, args []string) error {
	fs := newFlags("checkpoints")
	name := fs.String("projection", "", "the projection")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if _, err := projection(*name); err != nil {
		return err
	}
	admin, err := s.Admin(ctx)
	if err != nil {
		return err
	}
	cps, err := admin.Checkpoints(ctx, *name)
	if err != nil {
		return err
	}
	w := newTable(s.stdout)
	fmt.Fprintln(w, "PARTITION\tCURSOR\tLAST EVENT AT\tUPDATED AT")
	for p := range s.cfg.Streams.Partitions {
		cp, ok := cps[p]
		if !ok {
			fmt.Fprintf(w, "%d\t0\t-\tnever ran\n", p)
			continue
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\n", p, cp.LastSequence, timeOrDash(&cp.LastEventAt), cp.UpdatedAt.UTC().Format(time.RFC3339))
	}
	return w.Flush()
}

func timeOrDash(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func cmdDLQ(ctx context.Context, s *session, args []string) error {
	if len(args) == 0 {
		return usagef("want list, retry or skip")
	}
	switch args[0] {
	case "list":
		return dlqList(ctx, s, args[1:])
	case "retry":
		return dlqResolve(ctx, s, args[1:], true)
	case "skip":
		return dlqResolve(ctx, s, args[1:], false)
	default:
		return usagef("unknown dlq command %q; want list, retry or skip", args[0])
	}
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

var deadLetterStatuses = []projections.DeadLetterStatus{projections.StatusFailed, projections.StatusParked,
	projections.StatusRetried, projections.StatusSkipped, projections.StatusSuperseded}

func dlqList(ctx context.Context, s *session, args []string) error {
	fs := newFlags("dlq list")
	name := fs.String("projection", "", "only this projection")
	status := fs.String("status", "", "only this status: failed, parked, retried, skipped or superseded")
	orderID := fs.String("order", "", "only this order")
	after := fs.Int64("after", 0, "only ids above this one (the next page)")
	limit := fs.Int("limit", 100, "at most this many")
	asJSON := fs.Bool("json", false, "print JSON lines, with the event body")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if *name != "" {
		if _, err := projection(*name); err != nil {
			return err
		}
	}
	q := projections.DeadLetterQuery{Projection: *name, Status: projections.DeadLetterStatus(*status), OrderID: *orderID, AfterID: *after, Limit: *limit}
	if *status != "" && !slices.Contains(deadLetterStatuses, q.Status) {
		return usagef("--status %q: want failed, parked, retried, skipped or superseded", *status)
	}
	if *limit < 1 {
		return usagef("--limit must be at least 1")
	}
	admin, err := s.Admin(ctx)
	if err != nil {
		return err
	}
	letters, err := admin.DeadLetters(ctx, q)
	if err != nil {
		return err
	}
	if len(letters) == *limit {
		fmt.Fprintf(s.stderr, "orderctl: showing the first %d; the next page: --after %d\n", *limit, letters[len(letters)-1].ID)
	}
	if *asJSON {
		enc := json.NewEncoder(s.stdout)
		for _, l := range letters {
			if err := enc.Encode(jsonDeadLetter(l)); err != nil {
				return err
			}
		}
		return nil
	}
	w := newTable(s.stdout)
	fmt.Fprintln(w, "ID\tPROJECTION\tPARTITION\tSEQUENCE\tORDER\tVERSION\tTYPE\tSTATUS\tATTEMPTS\tUPDATED AT\tERROR")
	for _, l := range letters {
		fmt.Fprintf(w, "%d\t%s\t%d\t%d\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", l.ID, l.Projection, l.Partition, l.StreamSequence,
			l.OrderID, l.EventVersion, l.EventType, l.Status, l.Attempts, l.UpdatedAt.UTC().Format(time.RFC3339), l.Error)
	}
	return w.Flush()
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

// dlqResolve retries or skips a failed dead letter and prints what
// happened to it and to the events of its order parked behind it.
func dlqResolve(ctx context.Context, s *session, args []string, retry bool) error {
	verb := map[bool]string{true: "retry", false: "skip"}[retry]
	fs := newFlags("dlq " + verb)
	name := fs.String("projection", "", "the dead letter's projection")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want --projection NAME <id>")
	}
	id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
	if err != nil || id < 1 {
		return usagef("dead letter id %q: want a positive integer (see orderctl dlq list)", fs.Arg(0))
	}
	p, err := projection(*name)
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
	res, err := resolve(ctx, p, id)
	if err != nil && !errors.Is(err, projections.ErrStillFailing) {
		return err
	}
	done := map[bool]string{true: "retried", false: "skipped"}[retry]
	if res.Failed != 0 {
		fmt.Fprintf(s.stdout, "dead letter %d of %s %s: %s applied, then dead letter %d failed again; %s still parked\n",
			id, p.Name(), done, eventCount(res.Applied), res.Failed, eventCount(res.Parked))
		return err
	}
	fmt.Fprintf(s.stdout, "dead letter %d of %s %s: %s applied; the order is unblocked\n", id, p.Name(), done, eventCount(res.Applied))
	return nil
}

func eventCount(n int) string {
	if n == 1 {
		return "1 event"
	}
	return strconv.Itoa(n) + " events"
}

func cmdRebuild(ctx context.Context, s *session, args []string) error {
	fs := newFlags("rebuild")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want <projection> (%s)", strings.Join(readmodel.Names(), ", "))
	}
	p, err := projection(fs.Arg(0))
	if err != nil {
		return err
	}
	admin, err := s.Admin(ctx)
	if err != nil {
		return err
	}
	line := newStatusLine(s.stderr, 5*time.Second)
	pr, err := admin.Rebuild(ctx, p, projections.RebuildOptions{Progress: func(pr projections.RebuildProgress) {
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
		p.Name(), pr.Done, pr.Elapsed.Round(time.Millisecond), pr.Rate)
	return nil
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

func cmdWait(ctx context.Context, s *session, args []string) error {
	fs := newFlags("wait")
	name := fs.String("projection", "", "the projection to wait for")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the result and the projection")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want --projection NAME <commandId>")
	}
	p, err := projection(*name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := s.Client()
	if err != nil {
		return err
	}
	pool, err := s.DB(ctx)
	if err != nil {
		return err
	}
	r, err := c.Await(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if r.Status == contract.StatusRejected {
		fmt.Fprintf(s.stdout, "command %s was rejected (%s: %s); nothing to wait for\n", r.CommandID, r.Error.Code, r.Error.Message)
		return &client.RejectedError{Result: r}
	}
	start := time.Now()
	if err := clientreadmodel.WaitForProjection(ctx, pool, s.cfg.Schema, p.Name(), s.cfg.Streams.Partitions, r); err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "%s has projected command %s (order %s, stream sequence %d); waited %s\n",
		p.Name(), r.CommandID, r.OrderID, r.StreamSequence, time.Since(start).Round(time.Microsecond))
	return nil
}
