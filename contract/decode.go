package contract

import (
	"encoding/json"
	"time"
)

// decodeEnvelope reads an event envelope in the form its writers produce
// (compact JSON, the exact field names, strings of printable ASCII without
// escapes, integers, data an object) several times faster than
// encoding/json, which reads every envelope a projector or a loading
// aggregator receives. It reports false for anything else, and DecodeEvent
// then reads the body with encoding/json: where both read a body, they read
// the same Event (FuzzDecodeEnvelope).
func decodeEnvelope(body []byte) (Event, bool) {
	var e Event
	s := scanner{b: body}
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "id":
			return s.str(&e.ID)
		case "aggregateType":
			return s.str(&e.AggregateType)
		case "aggregateId":
			return s.str(&e.AggregateID)
		case "type":
			return s.str(&e.Type)
		case "schemaVersion":
			var v int64
			ok := s.int(&v)
			e.SchemaVersion = int(v)
			return ok
		case "version":
			return s.int(&e.Version)
		case "data":
			return s.rawObject(&e.Data)
		case "metadata":
			return s.metadata(&e.Metadata)
		}
		return false
	})
	return e, ok && s.i == len(s.b)
}

// scanner reads a JSON text from b[i:]. Each method reads one value and
// reports false where the text is not in the form decodeEnvelope reads.
type scanner struct {
	b []byte
	i int
}

// object reads {"key":value,...}, handing each key to value, which reads
// the value.
func (s *scanner) object(value func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		key, ok := s.strBytes()
		if !ok || !s.next(':') || !value(key) {
			return false
		}
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

func (s *scanner) next(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// strBytes reads a string of printable ASCII without escapes: what
// encoding/json would read the same only after unescaping or replacing
// invalid UTF-8 is left to it.
func (s *scanner) strBytes() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	start := s.i
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

func (s *scanner) str(dst *string) bool {
	v, ok := s.strBytes()
	*dst = string(v)
	return ok
}

// int reads an integer of at most 18 digits, so it cannot overflow.
func (s *scanner) int(dst *int64) bool {
	neg := s.next('-')
	start := s.i
	var v int64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		v = v*10 + int64(s.b[s.i]-'0')
		s.i++
	}
	n := s.i - start
	switch {
	case n == 0 || n > 18 || n > 1 && s.b[start] == '0':
		return false
	case s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E'):
		return false
	}
	if neg {
		v = -v
	}
	*dst = v
	return true
}

// rawObject copies an object, as json.RawMessage does, after checking it
// is valid JSON.
func (s *scanner) rawObject(dst *json.RawMessage) bool {
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	start, depth, inString := s.i, 0, false
	for ; s.i < len(s.b); s.i++ {
		c := s.b[s.i]
		switch {
		case inString && c == '\\':
			s.i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		}
		if depth == 0 {
			s.i++
			raw := s.b[start:s.i]
			if !json.Valid(raw) {
				return false
			}
			*dst = append(json.RawMessage(nil), raw...)
			return true
		}
	}
	return false
}

func (s *scanner) metadata(m *EventMetadata) bool {
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "userId":
			return s.str(&m.UserID)
		case "correlationId":
			return s.str(&m.CorrelationID)
		case "causationId":
			return s.str(&m.CausationID)
		case "timestamp":
			v, ok := s.strBytes()
			if !ok {
				return false
			}
			t, err := time.Parse(time.RFC3339Nano, string(v))
			m.Timestamp = Time{t.UTC()}
			return err == nil
		}
		return false
	})
}
