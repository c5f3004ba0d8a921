// Package startup waits for a service's dependencies at start-up: in
// Kubernetes a pod may start before NATS or PostgreSQL is reachable, and
// should wait for them rather than crash in a loop.
package startup

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jetsource/jetsource/internal/backoff"
)

// Wait runs step until it succeeds, with pauses growing from 250 ms to 5 s
// and a 10 s bound per attempt. It gives up at once on an error for which
// fatal reports true (a misconfiguration that waiting cannot fix), and when
// ctx ends.
func Wait(ctx context.Context, log *slog.Logger, what string, fatal func(error) bool, step func(context.Context) error) error {
	pauses := backoff.New(250*time.Millisecond, 5*time.Second)
	for {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := step(attempt)
		cancel()
		if err == nil || fatal(err) {
			return err
		}
		pause := pauses.Pause()
		log.Warn(what+" not ready; retrying", "error", err, "retry_in", pause.String())
		if !backoff.Sleep(ctx, pause) {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
}
