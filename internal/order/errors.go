package order

import (
	"errors"
	"fmt"
	"strings"
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

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// FieldErrors is every problem found in one command, told together so that
// a sender can fix them in one go.
type FieldErrors []*FieldError

func (e FieldErrors) Error() string {
	parts := make([]string, len(e))
	for i, p := range e {
		parts[i] = p.Error()
	}
	return strings.Join(parts, "; ")
}

// Is makes FieldErrors match ErrInvalidCommand.
func (e FieldErrors) Is(target error) bool { return target == ErrInvalidCommand }

// join returns problems as one error: nil for none, the FieldError for one,
// FieldErrors for more. Nil entries are skipped.
func join[E error](problems []E) error {
	var all FieldErrors
	for _, p := range problems {
		all = append(all, flatten(p)...)
	}
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	return all
}

// flatten lists the FieldErrors in err: a *FieldError, FieldErrors, or nil.
func flatten(err error) FieldErrors {
	switch e := err.(type) {
	case *FieldError:
		if e != nil {
			return FieldErrors{e}
		}
	case FieldErrors:
		return e
	}
	return nil
}

func stateErr(s Status, format string, args ...any) error {
	return &StateError{Status: s, Reason: fmt.Sprintf(format, args...)}
}
