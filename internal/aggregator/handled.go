package aggregator

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"

	"github.com/jetsource/jetsource/contract"
)

// answer is what an order knows about a command id.
type answer int

const (
	// notHandled: the command produced no event of the order.
	notHandled answer = iota
	// handled: it did.
	handled
	// maybeHandled: only the order's events can tell (their causation
	// ids); the filter cannot rule the id out.
	maybeHandled
)

// handledCommands remembers the ids of the commands that produced an
// order's events, which make a redelivered or re-sent command idempotent
// after the results stream has forgotten it. It knows exactly the ids
// folded since the order was loaded and all of them when it was folded
// from its first event; the others, folded into a snapshot before, only
// through a Bloom filter, whose "maybe" the order's events settle. So a
// snapshot carries a few bits per command instead of every id.
type handledCommands struct {
	filter scalableFilter
	// recent holds the ids folded since the state was loaded.
	recent map[string]struct{}
	// complete is set when recent holds every id (the state was folded
	// from the order's first event).
	complete bool
}

func newHandledCommands() *handledCommands {
	return &handledCommands{recent: map[string]struct{}{}, complete: true}
}

func (h *handledCommands) add(commandID string) {
	if _, ok := h.recent[commandID]; ok {
		return
	}
	h.recent[commandID] = struct{}{}
	h.filter.add(commandID)
}

// learnAll records the ids of all of the order's events, read to settle a
// "maybe": the set knows every id from then on.
func (h *handledCommands) learnAll(events []contract.Event) {
	for _, e := range events {
		if id := e.Metadata.CausationID; id != "" {
			h.add(id)
		}
	}
	h.complete = true
}

func (h *handledCommands) knows(commandID string) answer {
	if _, ok := h.recent[commandID]; ok {
		return handled
	}
	if h.complete || !h.filter.mayContain(commandID) {
		return notHandled
	}
	return maybeHandled
}

func (h *handledCommands) MarshalJSON() ([]byte, error) { return json.Marshal(h.filter) }

// UnmarshalJSON reads a snapshot's filter: the ids themselves are unknown.
func (h *handledCommands) UnmarshalJSON(b []byte) error {
	h.recent, h.complete = map[string]struct{}{}, false
	if err := json.Unmarshal(b, &h.filter); err != nil {
		return err
	}
	return h.filter.validate()
}

// scalableFilter is a Bloom filter that grows: a series of layers, each
// twice the capacity of the one before and with half its false-positive
// rate, so that the whole answers "maybe" for at most about 2% of the ids
// it does not hold, however many it holds.
type scalableFilter struct {
	Layers []filterLayer `json:"layers"`
}

// filterLayer is one Bloom filter of fixed capacity.
type filterLayer struct {
	// Hashes is the number of bit positions per id.
	Hashes uint32 `json:"k"`
	// Capacity is how many ids the layer takes before the next one opens;
	// Count how many it holds.
	Capacity uint32 `json:"cap"`
	Count    uint32 `json:"n"`
	Bits     []byte `json:"bits"`
}

const (
	firstLayerCapacity = 64
	firstLayerFPRate   = 0.01
)

func newFilterLayer(capacity uint32, fpRate float64) filterLayer {
	bits := math.Ceil(-float64(capacity) * math.Log(fpRate) / (math.Ln2 * math.Ln2))
	hashes := max(1, math.Round(bits/float64(capacity)*math.Ln2))
	return filterLayer{Hashes: uint32(hashes), Capacity: capacity, Bits: make([]byte, (int(bits)+7)/8)}
}

func (f *scalableFilter) add(id string) {
	if n := len(f.Layers); n == 0 || f.Layers[n-1].Count >= f.Layers[n-1].Capacity {
		f.Layers = append(f.Layers, newFilterLayer(firstLayerCapacity<<n, firstLayerFPRate/float64(uint(1)<<n)))
	}
	l := &f.Layers[len(f.Layers)-1]
	h1, h2 := filterHashes(id)
	m := uint32(len(l.Bits) * 8)
	for i := range l.Hashes {
		bit := (h1 + i*h2) % m
		l.Bits[bit/8] |= 1 << (bit % 8)
	}
	l.Count++
}

func (f *scalableFilter) mayContain(id string) bool {
	h1, h2 := filterHashes(id)
	for _, l := range f.Layers {
		if l.mayContain(h1, h2) {
			return true
		}
	}
	return false
}

func (l filterLayer) mayContain(h1, h2 uint32) bool {
	m := uint32(len(l.Bits) * 8)
	if m == 0 {
		return false
	}
	for i := range l.Hashes {
		bit := (h1 + i*h2) % m
		if l.Bits[bit/8]&(1<<(bit%8)) == 0 {
			return false
		}
	}
	return true
}

// filterHashes derives the two hashes of double hashing from FNV-1a 64:
// stable across processes and versions, as snapshots need.
func filterHashes(id string) (uint32, uint32) {
	h := fnv.New64a()
	h.Write([]byte(id))
	sum := h.Sum64()
	return uint32(sum), uint32(sum>>32) | 1
}

// validate rejects a decoded filter that could not have been written: it
// would answer at random.
func (f scalableFilter) validate() error {
	for i, l := range f.Layers {
		if l.Hashes == 0 || l.Hashes > 64 || len(l.Bits) == 0 || l.Count > l.Capacity {
			return fmt.Errorf("filter layer %d is malformed", i)
		}
	}
	return nil
}
