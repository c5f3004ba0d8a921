package contract_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/jetsource/jetsource/contract"
)

func envelope() contract.Event {
	return contract.Event{ID: "01JF8ZQ7W3X9K2M4N6P8R0T2V4", AggregateType: "order", AggregateID: "ord-12345", Type: contract.TypeItemAdded,
		SchemaVersion: 1, Version: 3, Data: json.RawMessage(`{"productId":"sku-17","quantity":3,"unitPriceCents":1299}`),
		Metadata: contract.EventMetadata{UserID: "u-1", CorrelationID: "corr-1", CausationID: "cmd-1",
			Timestamp: contract.Time{Time: time.Date(2026, 1, 1, 0, 3, 4, 123456000, time.UTC)}}}
}

// FuzzDecodeEvent checks that DecodeEvent reads every body as
// encoding/json reads it into an Event: the same envelope, or an error.
func FuzzDecodeEvent(f *testing.F) {
	typical, _ := json.Marshal(envelope())
	f.Add(typical)
	bare := envelope()
	bare.Metadata = contract.EventMetadata{Timestamp: bare.Metadata.Timestamp}
	bare.Data = json.RawMessage(`{"shipment":{"trackingNumber":"t \"1\"","carrier":"ü"},"items":[{"a":[1,{}]}]}`)
	b, _ := json.Marshal(bare)
	f.Add(b)
	for _, s := range []string{
		`{}`, `{"id":"a"}`, `{"id":"a","id":"b"}`, `{"ID":"a"}`, `{"id":"\u0041"}`, `{"id":"é"}`, `{"id":null}`,
		`{"version":-0}`, `{"version":01}`, `{"version":1.0}`, `{"version":1e2}`, `{"version":123456789012345678901}`,
		`{"schemaVersion":99999999999}`, `{"data":null}`, `{"data":[1]}`, `{"data":{"a":"}"}}`, `{"data":{"a":"\\"}}`,
		`{"data":{]}`, `{"data":{"a":1}`, `{"metadata":{"timestamp":"2026-01-01T00:00:00+02:00"}}`,
		`{"metadata":{"timestamp":"yesterday"}}`, `{"metadata":{"userId":"a"},"metadata":{"causationId":"b"}}`,
		`{"unknown":1}`, "{\"id\":\"\xff\"}", ` {"id":"a"}`, `{"id":"a"} `, `{"id":"a"}x`, `{"id" :"a"}`, `{"id":"a",}`, `{"id":"a`, ``, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := contract.DecodeEvent("orders.events.1.ord-12345", 7, body)
		var want contract.Event
		wantErr := json.Unmarshal(body, &want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: DecodeEvent error %v, encoding/json error %v", body, err, wantErr)
		}
		if err != nil {
			return
		}
		want.Subject, want.Sequence = "orders.events.1.ord-12345", 7
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nDecodeEvent  %+v\nencoding/json %+v", body, got, want)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	body, _ := json.Marshal(envelope())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := contract.DecodeEvent("orders.events.1.ord-12345", 7, body); err != nil {
			b.Fatal(err)
		}
	}
}
