package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jetsource/jetsource/client"
	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
)

func cmdSend(ctx context.Context, s *session, args []string) error {
	fs := newFlags("send")
	id := fs.String("id", "", "command id (default: a new random id)")
	user := fs.String("user", "", "metadata.userId")
	correlation := fs.String("correlation", "", "metadata.correlationId")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the result")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 2 || fs.NArg() > 3 {
		return usagef("want <orderId> <CommandType> [data-json]")
	}
	data := []byte(nil)
	if fs.NArg() == 3 {
		data = []byte(fs.Arg(2))
	}
	// The domain's checks make a bad command a usage error here rather
	// than a rejection; what is sent is the contract's form of it.
	if _, err := order.ParseCommand(fs.Arg(1), data); err != nil {
		return usagef("%v", err)
	}
	cmd, err := contract.ParseCommand(fs.Arg(1), data)
	if err != nil {
		return usagef("%v", err)
	}
	c, err := s.Client()
	if err != nil {
		return err
	}
	env := client.NewEnvelope(fs.Arg(0), cmd)
	if *id != "" {
		env.ID = *id
	}
	env.Metadata = contract.CommandMetadata{UserID: *user, CorrelationID: *correlation}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	r, sendErr := c.Send(ctx, env)
	if r.CommandID == "" {
		return sendErr
	}
	if err := printJSON(s.stdout, r); err != nil {
		return err
	}
	return sendErr
}

func cmdHistory(ctx context.Context, s *session, args []string) error {
	fs := newFlags("history")
	asJSON := fs.Bool("json", false, "print the event envelopes as JSON lines")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want <orderId>")
	}
	c, err := s.Client()
	if err != nil {
		return err
	}
	// Page by page from the orders-query service.
	var events []contract.Event
	for q := (contract.HistoryQuery{OrderID: fs.Arg(0), Limit: contract.MaxHistoryLimit}); ; {
		page, err := c.History(ctx, q)
		if err != nil {
			return err
		}
		events = append(events, page.Events...)
		if !page.More {
			break
		}
		q.AfterVersion = page.Events[len(page.Events)-1].Version
	}
	if *asJSON {
		enc := json.NewEncoder(s.stdout)
		for _, e := range events {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	w := newTable(s.stdout)
	fmt.Fprintln(w, "VERSION\tTIME\tTYPE\tDATA\tCOMMAND\tUSER")
	for _, e := range events {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Version, e.Metadata.Timestamp.Format(time.RFC3339Nano),
			e.Type, e.Data, e.Metadata.CausationID, e.Metadata.UserID)
	}
	return w.Flush()
}

func cmdState(ctx context.Context, s *session, args []string) error {
	fs := newFlags("state")
	version := fs.String("version", "", "state after this version")
	at := fs.String("at", "", "state as it was at this time (RFC 3339)")
	if err := s.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want <orderId>")
	}
	q := contract.StateQuery{OrderID: fs.Arg(0)}
	if *version != "" && *at != "" {
		return usagef("give --version or --at, not both")
	}
	if *version != "" {
		n, err := strconv.ParseInt(*version, 10, 64)
		if err != nil || n < 1 {
			return usagef("--version wants a positive integer, got %q", *version)
		}
		q.Version = n
	}
	if *at != "" {
		parsed, err := time.Parse(time.RFC3339Nano, *at)
		if err != nil {
			return usagef("--at wants an RFC 3339 time such as 2026-11-23T10:00:00Z: %v", err)
		}
		q.At = &contract.Time{Time: parsed}
	}
	c, err := s.Client()
	if err != nil {
		return err
	}
	state, err := c.State(ctx, q)
	if err != nil {
		return err
	}
	return printJSON(s.stdout, state)
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable aligns tab-separated columns; Flush writes them.
func newTable(out io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(out, 0, 4, 2, ' ', 0) }

// parse parses a command's flags; -h prints them and ends the command.
func (s *session) parse(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(s.stdout)
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return usagef("%v", err)
	}
	return nil
}
