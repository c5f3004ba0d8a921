// Package docs_test keeps the machine-readable contract in step with the
// code: the command types, event types and error codes of asyncapi.yaml
// must be exactly the ones the service knows.
package docs_test

import (
	"os"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/jetsource/jetsource/contract"
	"github.com/jetsource/jetsource/internal/order"
)

// asyncAPI is the part of asyncapi.yaml the test reads.
type asyncAPI struct {
	Channels struct {
		Commands struct {
			Parameters struct {
				CommandType struct {
					Enum []string `json:"enum"`
				} `json:"commandType"`
			} `json:"parameters"`
		} `json:"commands"`
	} `json:"channels"`
	Components struct {
		Schemas struct {
			EventType struct {
				Enum []string `json:"enum"`
			} `json:"eventType"`
			CommandEnvelope struct {
				Properties struct {
					Type struct {
						Enum []string `json:"enum"`
					} `json:"type"`
				} `json:"properties"`
			} `json:"commandEnvelope"`
			Result struct {
				Properties struct {
					Status struct {
						Enum []string `json:"enum"`
					} `json:"status"`
					Error struct {
						Properties struct {
							Code struct {
								Enum []string `json:"enum"`
							} `json:"code"`
						} `json:"properties"`
					} `json:"error"`
				} `json:"properties"`
			} `json:"result"`
		} `json:"schemas"`
	} `json:"components"`
}

func TestAsyncAPIMatchesTheCode(t *testing.T) {
	raw, err := os.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc asyncAPI
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	events := []string{order.TypeOrderCreated, order.TypeItemAdded, order.TypeItemRemoved, order.TypeOrderSubmitted,
		order.TypeOrderPaid, order.TypeOrderShipped, order.TypeOrderDelivered, order.TypeOrderCanceled}
	for _, e := range events {
		if _, err := order.ParseEvent(e, []byte(`{}`)); err != nil {
			t.Fatalf("%s is not an event type the domain decodes: %v", e, err)
		}
	}
	codes := []string{string(contract.CodeInvalidCommand), string(contract.CodeUnknownCommand), string(contract.CodeNotFound), string(contract.CodeAlreadyExists),
		string(contract.CodeInvalidState), string(contract.CodeConflict), string(contract.CodeInternal)}
	for _, c := range []struct {
		where     string
		got, want []string
	}{
		{"channels.commands.parameters.commandType", doc.Channels.Commands.Parameters.CommandType.Enum, order.CommandTypes()},
		{"components.schemas.commandEnvelope.type", doc.Components.Schemas.CommandEnvelope.Properties.Type.Enum, order.CommandTypes()},
		{"components.schemas.eventType", doc.Components.Schemas.EventType.Enum, events},
		{"components.schemas.result.status", doc.Components.Schemas.Result.Properties.Status.Enum, []string{string(contract.StatusAccepted), string(contract.StatusRejected)}},
		{"components.schemas.result.error.code", doc.Components.Schemas.Result.Properties.Error.Properties.Code.Enum, codes},
	} {
		got, want := slices.Sorted(slices.Values(c.got)), slices.Sorted(slices.Values(c.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s lists %v; the code has %v", c.where, got, want)
		}
	}
}
