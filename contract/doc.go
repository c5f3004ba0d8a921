// Package contract is JetSource's wire contract (docs/contract.md):
// stream names, subjects and the partition function, header names, id
// rules, and the JSON of command, event and result messages with their
// data types.
//
// The services and the Go client both build their messages from it. It
// imports only the standard library, so a client links no service code,
// and a change here is a change of the public contract, never a side
// effect of an internal refactor. The order domain keeps its own types;
// tests pin that both read and write the same JSON.
package contract
