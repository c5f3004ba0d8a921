package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jetsource/jetsource/internal/pgserver"
)

// naiveSchema is the seeds' event table: one row per event, optimistic
// concurrency by the unique (aggregate, version) pair.
const naiveSchema = `CREATE TABLE events (
	id             text PRIMARY KEY,
	aggregate_id   text NOT NULL,
	aggregate_type text NOT NULL,
	event_type     text NOT NULL,
	version        integer NOT NULL,
	payload        jsonb NOT NULL,
	metadata       jsonb NOT NULL,
	created_at     timestamptz NOT NULL DEFAULT now(),
	UNIQUE (aggregate_id, version)
)`

// benchPostgres appends events to the seeds' naive PostgreSQL event table,
// one transaction per event, on a server with its durability settings on
// (fsync, synchronous commit): the single-node comparison at equal
// durability with the fsync cells of the matrix.
func benchPostgres(ctx context.Context, cfg config) error {
	// pgserver puts the data into a temporary directory the postgres user can reach.
	rule(fmt.Sprintf("Baseline: the seeds' naive PostgreSQL event table, fsync on, %ds per run", cfg.pgSeconds))
	srv, err := pgserver.Start(ctx, pgserver.Config{Install: true, Durable: true})
	if err != nil {
		return err
	}
	defer srv.Stop()
	url := srv.URL("postgres")
	setup, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	_, err = setup.Exec(ctx, naiveSchema)
	setup.Close(ctx)
	if err != nil {
		return err
	}
	payload := `{"productId":"sku-1","quantity":2,"unitPriceCents":1999,"note":"` + strings.Repeat("x", 180) + `"}`
	for _, conns := range []int{1, 16} {
		rate, err := naiveInserts(ctx, url, conns, time.Duration(cfg.pgSeconds)*time.Second, payload)
		if err != nil {
			return err
		}
		fmt.Printf("  %2d connection(s), one INSERT per transaction                %8.0f events/s\n", conns, rate)
	}
	fmt.Printf("  today (issue 10): 15.5k inserts/s with 16 connections\n")
	return nil
}

// naiveInserts appends events with conns connections for d, each
// connection to its own aggregates, and returns the events per second.
func naiveInserts(ctx context.Context, url string, conns int, d time.Duration, payload string) (float64, error) {
	var (
		total atomic.Int64
		wg    sync.WaitGroup
		errs  = make([]error, conns)
	)
	stop := time.Now().Add(d)
	start := time.Now()
	for c := range conns {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs[c] = err
				return
			}
			defer conn.Close(ctx)
			const aggregates = 100
			versions := make([]int, aggregates)
			for i := 0; time.Now().Before(stop); i++ {
				a := i % aggregates
				versions[a]++
				_, err := conn.Exec(ctx, `INSERT INTO events (id, aggregate_id, aggregate_type, event_type, version, payload, metadata)
					VALUES ($1, $2, 'order', 'ItemAdded', $3, $4, $5)`,
					fmt.Sprintf("evt-%d-%d-%d", conns, c, i), fmt.Sprintf("ord-%d-%d-%d", conns, c, a), versions[a], payload,
					`{"userId":"u-7","correlationId":"corr-1","causationId":"cmd-1"}`)
				if err != nil {
					errs[c] = err
					return
				}
				total.Add(1)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return float64(total.Load()) / time.Since(start).Seconds(), nil
}
