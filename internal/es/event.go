package es

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Headers set on every stored event, so subscribers can route without
// decoding bodies.
const (
	HeaderEventType        = "Event-Type"
	HeaderAggregateVersion = "Aggregate-Version"
)

// Event is the stored envelope of one event (DESIGN section 4). Sequence
// and Subject are where it is stored; they are not part of the body.
type Event struct {
	ID            string          `json:"id"`
	AggregateType string          `json:"aggregateType"`
	AggregateID   string          `json:"aggregateId"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schemaVersion"`
	Version       int64           `json:"version"`
	Data          json.RawMessage `json:"data"`
	Metadata      Metadata        `json:"metadata"`

	Sequence uint64 `json:"-"`
	Subject  string `json:"-"`
}

// Metadata links an event to the command and the request that caused it.
type Metadata struct {
	UserID        string `json:"userId,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
	CausationID   string `json:"causationId,omitempty"`
	Timestamp     Time   `json:"timestamp"`
}

// Time is a UTC instant written with exactly six fractional digits, the
// contract's timestamp form, and read from any RFC 3339 form.
type Time struct{ time.Time }

const timeLayout = "2006-01-02T15:04:05.000000Z"

// MarshalJSON writes the contract's form.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(timeLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, timeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON reads any RFC 3339 time.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	t.Time = v.UTC()
	return nil
}

// NewEventID returns a fresh event id: "evt-" and a UUIDv7 of now, so ids
// sort by creation time, which keeps index inserts of read models cheap.
func NewEventID(now time.Time) string { return "evt-" + newUUIDv7(now) }

func newUUIDv7(now time.Time) string {
	var u [16]byte
	binary.BigEndian.PutUint64(u[0:8], uint64(now.UnixMilli())<<16)
	rand.Read(u[6:])
	u[6] = u[6]&0x0f | 0x70
	u[8] = u[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], u[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], u[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], u[8:10])
	out[23] = '-'
	hex.Encode(out[24:], u[10:])
	return string(out[:])
}

// DecodeEvent reads a stored message body into an envelope.
func DecodeEvent(subject string, sequence uint64, body []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return Event{}, fmt.Errorf("decode event at sequence %d: %w", sequence, err)
	}
	e.Subject, e.Sequence = subject, sequence
	return e, nil
}
