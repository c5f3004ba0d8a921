package order

import (
	"errors"
	"fmt"
)

// Sentinel errors classify every rejection. The service edge maps them to
// wire error codes; callers test them with errors.Is.
var (
	// ErrInvalidCommand: a command is malformed, misses a field or carries an
	// invalid value. Resending it unchanged can never succeed.
	ErrInvalidCommand = errors.New("invalid command")
	// ErrUnknownCommand: the command type is not one this domain handles.
	ErrUnknownCommand = errors.New("unknown command")
	// ErrNotFound: the command needs an order that does not exist.
	ErrNotFound = errors.New("order not found")
	// ErrAlreadyExists: CreateOrder for an order that exists.
	ErrAlreadyExists = errors.New("order already exists")
	// ErrInvalidState: the order's current state forbids the command.
	ErrInvalidState = errors.New("invalid state")
)

// FieldError says which field of a command is wrong and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Is makes a FieldError match ErrInvalidCommand.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidCommand }

// StateError says which rule of the order's lifecycle a command broke.
type StateError struct {
	Status Status
	Reason string
}

func (e *StateError) Error() string { return e.Reason }

// Is makes a StateError match ErrInvalidState.
func (e *StateError) Is(target error) bool { return target == ErrInvalidState }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func stateErr(s Status, format string, args ...any) error {
	return &StateError{Status: s, Reason: fmt.Sprintf(format, args...)}
}
