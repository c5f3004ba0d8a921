package es

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
)

// TestEncodersMatchEncodingJSON pins the hand-written encoders to
// encoding/json's output, byte for byte, including its escaping.
func TestEncodersMatchEncodingJSON(t *testing.T) {
	odd := "a\"b\\c\n\r\t\b\f\x00\x1f<>&é\u2028\u2029\xff\xfe𝄞"
	at := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	events := []contract.Event{
		{ID: "evt-1", AggregateType: "order", AggregateID: "ord-1", Type: "ItemAdded", SchemaVersion: 1, Version: 3,
			Data:     json.RawMessage(`{"productId":"sku-1","quantity":2,"unitPriceCents":1999}`),
			Metadata: contract.EventMetadata{UserID: "u-7", CorrelationID: "corr-1", CausationID: "cmd-2", Timestamp: contract.Time{Time: at}}},
		{ID: odd, AggregateType: odd, AggregateID: odd, Type: odd, SchemaVersion: -2, Version: 1 << 62,
			Data: json.RawMessage(`{}`), Metadata: contract.EventMetadata{UserID: odd, Timestamp: contract.Time{Time: at}}},
		{ID: "evt-2"},
	}
	for _, e := range events {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendEvent(nil, e); string(got) != string(want) {
			t.Errorf("event:\n got %s\nwant %s", got, want)
		}
	}
	results := []contract.Result{
		{CommandID: "cmd-1", OrderID: "ord-1", Status: contract.StatusAccepted, Version: 3, EventIDs: []string{"evt-1", "evt-2"}, StreamSequence: 1042},
		{CommandID: "cmd-2", OrderID: "ord-1", Status: contract.StatusRejected,
			Error: &contract.ResultError{Code: contract.CodeInvalidState, Message: odd}},
		{CommandID: odd, Status: contract.StatusRejected, Error: &contract.ResultError{Code: contract.CodeInvalidCommand}},
		{},
	}
	for _, r := range results {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendResult(nil, r); string(got) != string(want) {
			t.Errorf("result:\n got %s\nwant %s", got, want)
		}
	}
}
