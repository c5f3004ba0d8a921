package es

import (
	"strconv"
	"unicode/utf8"

	"github.com/jetsource/jetsource/contract"
)

// The encoders below write exactly what encoding/json writes for events
// and results (TestEncodersMatchEncodingJSON), without its reflection:
// they run for every command.

// appendEvent appends e's JSON envelope to b.
func appendEvent(b []byte, e contract.Event) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"aggregateType":`...)
	b = appendString(b, e.AggregateType)
	b = append(b, `,"aggregateId":`...)
	b = appendString(b, e.AggregateID)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	b = append(b, `,"schemaVersion":`...)
	b = strconv.AppendInt(b, int64(e.SchemaVersion), 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, e.Version, 10)
	b = append(b, `,"data":`...)
	if len(e.Data) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Data...)
	}
	b = append(b, `,"metadata":{`...)
	m := e.Metadata
	if m.UserID != "" {
		b = append(b, `"userId":`...)
		b = appendString(b, m.UserID)
		b = append(b, ',')
	}
	if m.CorrelationID != "" {
		b = append(b, `"correlationId":`...)
		b = appendString(b, m.CorrelationID)
		b = append(b, ',')
	}
	if m.CausationID != "" {
		b = append(b, `"causationId":`...)
		b = appendString(b, m.CausationID)
		b = append(b, ',')
	}
	b = append(b, `"timestamp":`...)
	ts, _ := m.Timestamp.MarshalJSON() // never fails
	b = append(b, ts...)
	return append(b, `}}`...)
}

// appendResult appends r's JSON to b.
func appendResult(b []byte, r contract.Result) []byte {
	b = append(b, `{"commandId":`...)
	b = appendString(b, r.CommandID)
	if r.OrderID != "" {
		b = append(b, `,"orderId":`...)
		b = appendString(b, r.OrderID)
	}
	b = append(b, `,"status":`...)
	b = appendString(b, string(r.Status))
	if r.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, r.Version, 10)
	}
	if len(r.EventIDs) > 0 {
		b = append(b, `,"eventIds":[`...)
		for i, id := range r.EventIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, id)
		}
		b = append(b, ']')
	}
	if r.StreamSequence != 0 {
		b = append(b, `,"streamSequence":`...)
		b = strconv.AppendUint(b, r.StreamSequence, 10)
	}
	if r.Error != nil {
		b = append(b, `,"error":{"code":`...)
		b = appendString(b, string(r.Error.Code))
		b = append(b, `,"message":`...)
		b = appendString(b, r.Error.Message)
		b = append(b, '}')
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json does:
// HTML-safe, invalid UTF-8 replaced, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
