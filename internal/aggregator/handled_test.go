package aggregator

import (
	"encoding/json"
	"fmt"
	"testing"
)

func TestHandledCommandsFilterHasNoFalseNegativesAndFewFalsePositives(t *testing.T) {
	for _, n := range []int{0, 1, 64, 65, 1000, 5000} {
		h := newHandledCommands()
		for i := range n {
			h.add(fmt.Sprintf("cmd-%d", i))
		}
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		// As a snapshot holds it: the filter alone.
		var loaded handledCommands
		if err := json.Unmarshal(b, &loaded); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if got := loaded.knows(fmt.Sprintf("cmd-%d", i)); got == notHandled {
				t.Fatalf("n=%d: cmd-%d handled but the filter rules it out", n, i)
			}
		}
		maybe := 0
		const probes = 20_000
		for i := range probes {
			if loaded.knows(fmt.Sprintf("other-%d", i)) == maybeHandled {
				maybe++
			}
		}
		if rate := float64(maybe) / probes; rate > 0.025 {
			t.Fatalf("n=%d: %.2f%% of unknown ids answered maybe, want at most about 2%%", n, 100*rate)
		}
		t.Logf("n=%d: %d bytes encoded, %.2f%% false maybes", n, len(b), 100*float64(maybe)/probes)
	}
}

func TestHandledCommandsKnowExactlyWhatWasFoldedSinceTheLoad(t *testing.T) {
	h := newHandledCommands()
	h.add("a")
	if h.knows("a") != handled || h.knows("b") != notHandled {
		t.Fatal("a set folded from the first event answers exactly")
	}
	var loaded handledCommands
	b, _ := json.Marshal(h)
	if err := json.Unmarshal(b, &loaded); err != nil {
		t.Fatal(err)
	}
	loaded.add("c")
	if loaded.knows("c") != handled || loaded.knows("a") != maybeHandled {
		t.Fatalf("after a load: c %v, a %v", loaded.knows("c"), loaded.knows("a"))
	}
	for _, bad := range []string{`{"layers":[{"k":0,"cap":64,"n":1,"bits":"AA=="}]}`, `{"layers":[{"k":3,"cap":1,"n":2,"bits":"AA=="}]}`, `[]`} {
		if err := json.Unmarshal([]byte(bad), &loaded); err == nil {
			t.Fatalf("malformed filter %s decoded", bad)
		}
	}
}
