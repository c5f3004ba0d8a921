// Package eventually is the tests' one way to wait: poll a condition until
// it holds, instead of sleeping for a guessed time. A test that must show
// something does not happen waits for an event that proves it instead (a
// later command's outcome, a checkpoint past it), never for a quiet period.
package eventually

import (
	"testing"
	"time"
)

// Holds polls cond until it reports true, and fails the test with what and
// cond's last state (its second result) if that takes longer than within.
// Polling starts at 1 ms and backs off to 50 ms, so a condition that holds
// soon costs little time and one that holds late costs little CPU.
func Holds(t testing.TB, within time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	began := time.Now()
	deadline := began.Add(within)
	pause := time.Millisecond
	for {
		ok, state := cond()
		if ok {
			return time.Since(began)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last state: %s", within, what, state)
		}
		time.Sleep(pause) // the poll interval, not a synchronisation
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// True is Holds for a condition without a state to report.
func True(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return Holds(t, within, what, func() (bool, string) { return cond(), "not yet" })
}
