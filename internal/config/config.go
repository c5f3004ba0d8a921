// Package config holds what every JetSource configuration shares: errors
// that name the field they are about, so that whoever filled the field (an
// environment variable, a flag) can be named to the user, and Env, which
// maps environment variables onto fields and reports every problem at once.
//
// A component owns its configuration: a DefaultConfig function is the one
// home of its defaults, and its Validate reports every problem as a
// FieldError. Only cmd/ reads the environment, through Env.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// FieldError is one problem with one field of a configuration. Field is
// the Go field path ("LeaseTTL", or "Aggregator.LeaseTTL" once nested);
// Problem says what is wrong in the user's words, without the value
// ("must be at least 1s"), so that the same text reads well after a
// variable name and its value.
type FieldError struct {
	Field   string
	Value   any
	Problem string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s is %s: %s", e.Field, format(e.Value), e.Problem)
}

// Invalid returns a FieldError for field, whose value is value.
func Invalid(field string, value any, format string, args ...any) error {
	return &FieldError{Field: field, Value: value, Problem: fmt.Sprintf(format, args...)}
}

// Nest prefixes the field paths of the FieldErrors in err with prefix and
// a dot: a configuration that holds another's as its field Prefix
// validates it with Nest("Prefix", c.Prefix.Validate()). It returns nil
// for nil.
func Nest(prefix string, err error) error {
	problems := Problems(err)
	for i, p := range problems {
		if fe, ok := p.(*FieldError); ok {
			nested := *fe
			nested.Field = prefix + "." + fe.Field
			problems[i] = &nested
		}
	}
	return errors.Join(problems...)
}

// Problems flattens the joined errors in err (errors.Join, and
// fmt.Errorf with several %w) into a list of single problems.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range joined.Unwrap() {
		out = append(out, Problems(e)...)
	}
	return out
}

// ReplicaID names a replica of a service: the host name (the pod name in
// Kubernetes) and a random suffix, since a host may run several replicas
// and a restarted one should not be taken for its predecessor.
func ReplicaID(service string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = service
	}
	// Dots would be subject token separators in NATS.
	return strings.ReplaceAll(host, ".", "_") + "-" + randomHex(4)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: it crashes the program instead
	return hex.EncodeToString(b)
}
