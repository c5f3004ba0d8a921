package contract_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/jetsource/jetsource/contract"
)

func TestUpcast(t *testing.T) {
	shipped := func(version int, data string) contract.Event {
		return contract.Event{ID: "evt-1", Type: contract.TypeOrderShipped, SchemaVersion: version, Data: json.RawMessage(data)}
	}
	const v2 = `{"shipment":{"trackingNumber":"1Z999","carrier":"UPS"}}`
	for _, tc := range []struct {
		name    string
		in      contract.Event
		want    string
		version int
		err     error
	}{
		{name: "OrderShipped 1 to 2", in: shipped(1, `{"trackingNumber":"1Z999","carrier":"UPS"}`), want: v2, version: 2},
		{name: "current version unchanged", in: shipped(2, v2), want: v2, version: 2},
		{name: "other types are at 1", in: contract.Event{Type: contract.TypeOrderCreated, SchemaVersion: 1, Data: json.RawMessage(`{"customerId":"c"}`)},
			want: `{"customerId":"c"}`, version: 1},
		{name: "a newer build's version", in: shipped(3, v2), err: contract.ErrSchemaVersion},
		{name: "version 0", in: shipped(0, v2), err: contract.ErrSchemaVersion},
		{name: "version 1 that is not JSON", in: shipped(1, `{"trackingNumber":`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := contract.Upcast(tc.in)
			switch {
			case tc.want == "" && err == nil:
				t.Fatalf("Upcast = %s at version %d, want an error", got.Data, got.SchemaVersion)
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Fatalf("error %v, want %v", err, tc.err)
			case tc.want != "" && (err != nil || string(got.Data) != tc.want || got.SchemaVersion != tc.version):
				t.Fatalf("Upcast = %s at version %d (%v), want %s at %d", got.Data, got.SchemaVersion, err, tc.want, tc.version)
			}
		})
	}
}
