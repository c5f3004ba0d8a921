package contract

import (
	"errors"
	"fmt"
)

// MaxIDLength bounds every id (order, command, product, customer, payment).
const MaxIDLength = 128

// ErrInvalidID is wrapped by ValidateID's errors.
var ErrInvalidID = errors.New("invalid id")

// ValidateID checks that id is 1 to 128 characters from [A-Za-z0-9_-].
// Ids become NATS subject tokens, so anything else (dots, wildcards,
// spaces) would let a caller address or corrupt other subjects. field names
// the id in the error.
func ValidateID(field, id string) error {
	if id == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalidID, field)
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("%w: %s is %d characters long; the limit is %d", ErrInvalidID, field, len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %s has %q at byte %d; ids use only A-Z, a-z, 0-9, '_' and '-'", ErrInvalidID, field, id[i:i+1], i)
		}
	}
	return nil
}
