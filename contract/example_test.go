package contract_test

import (
	"encoding/json"
	"fmt"

	"github.com/jetsource/jetsource/contract"
)

// Where a command goes, where its order's events are stored, and what a
// subscriber to that order's events filters on.
func ExampleEventSubject() {
	fmt.Println(contract.CommandSubject("ord-1", contract.TypeAddItem))
	fmt.Println(contract.EventSubject("ord-1", contract.DefaultPartitions))
	fmt.Println(contract.OrderEventsFilter("ord-1"))
	fmt.Println(contract.ResultSubject("cmd-1"))
	// Output:
	// orders.commands.ord-1.AddItem
	// orders.events.2.ord-1
	// orders.events.*.ord-1
	// orders.results.cmd-1
}

// A stored event of an older schema version, lifted to the current one.
func ExampleUpcast() {
	stored := contract.Event{ID: "evt-1", Type: contract.TypeOrderShipped, SchemaVersion: 1,
		Data: json.RawMessage(`{"trackingNumber":"1Z999","carrier":"UPS"}`)}
	e, err := contract.Upcast(stored)
	if err != nil {
		panic(err)
	}
	fmt.Println(e.SchemaVersion, string(e.Data))
	// Output: 2 {"shipment":{"trackingNumber":"1Z999","carrier":"UPS"}}
}
