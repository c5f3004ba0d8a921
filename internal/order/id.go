package order

// MaxIDLength bounds every id (order, command, product, customer, payment).
const MaxIDLength = 128

// ValidateID checks that id is 1 to 128 characters from [A-Za-z0-9_-].
// Ids become NATS subject tokens, so anything else (dots, wildcards, spaces)
// would let a caller address or corrupt other subjects.
func ValidateID(field, id string) error {
	if id == "" {
		return fieldErr(field, "is required")
	}
	if len(id) > MaxIDLength {
		return fieldErr(field, "is %d characters long; the limit is %d", len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if !idChar(id[i]) {
			return fieldErr(field, "has %q at byte %d; ids use only A-Z, a-z, 0-9, '_' and '-'", id[i:i+1], i)
		}
	}
	return nil
}

func idChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
