package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Env maps environment variables onto the fields of one configuration
// value. Each binding parses its variable at once if it is set; a variable
// that does not parse leaves its fields at their defaults and is reported
// by Check, together with every validation problem, in the variable's
// name. The bindings also document the variables (Usage).
type Env struct {
	lookup  func(string) (string, bool)
	root    reflect.Value     // the configuration struct
	vars    []variable        // in binding order
	byField map[string]string // field path → source name
	set     map[string]string // source name → its text as given
	bad     map[string]bool   // variables that did not parse
	errs    []error
}

// variable documents one binding.
type variable struct{ name, def, usage string }

// NewEnv maps variables found by lookup (os.LookupEnv in a binary) onto
// cfg, a pointer to a configuration struct.
func NewEnv(lookup func(string) (string, bool), cfg any) *Env {
	return &Env{lookup: lookup, root: reflect.ValueOf(cfg).Elem(), byField: map[string]string{}, set: map[string]string{}, bad: map[string]bool{}}
}

// String binds name to fields.
func (e *Env) String(name, usage string, fields ...*string) {
	bind(e, name, usage, func(s string) (string, error) { return s, nil }, fields)
}

// Secret binds name to fields: a password or token, never shown (a field
// of a string type such as natsconn.Secret converts: (*string)(&f)).
func (e *Env) Secret(name, usage string, fields ...*string) {
	e.String(name, usage, fields...)
	if _, ok := e.set[name]; ok {
		e.set[name] = "(not shown)"
	}
}

// URL binds name to fields: one URL or a comma-separated list, or a
// connection string. Errors show it with its passwords masked, never as
// given.
func (e *Env) URL(name, usage string, fields ...*string) {
	e.String(name, usage, fields...)
	if text, ok := e.set[name]; ok {
		e.set[name] = redactURLs(text)
	}
}

// redactURLs masks the passwords of a comma-separated list of URLs, and a
// user without a password, which NATS takes for a token; text that is not
// such a list is not shown at all.
func redactURLs(text string) string {
	if strings.TrimSpace(text) == "" {
		return text
	}
	parts := strings.Split(text, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.Scheme == "" || strings.Contains(strings.TrimSpace(p), " ") {
			return "(not shown: it may hold a password)"
		}
		if u.User != nil {
			if _, hasPassword := u.User.Password(); !hasPassword {
				u.User = url.User("xxxxx")
			}
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}

// Int binds name to fields: a whole number.
func (e *Env) Int(name, usage string, fields ...*int) {
	bind(e, name, usage, func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, errors.New("not a whole number")
		}
		return n, nil
	}, fields)
}

// Int64 binds name to fields: a whole number.
func (e *Env) Int64(name, usage string, fields ...*int64) {
	bind(e, name, usage, func(s string) (int64, error) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, errors.New("not a whole number")
		}
		return n, nil
	}, fields)
}

// Bool binds name to fields: true or false.
func (e *Env) Bool(name, usage string, fields ...*bool) {
	bind(e, name, usage, func(s string) (bool, error) {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, errors.New("not true or false")
		}
		return b, nil
	}, fields)
}

// Duration binds name to fields: a duration such as 500ms, 5s or 1m30s.
func (e *Env) Duration(name, usage string, fields ...*time.Duration) {
	bind(e, name, usage, func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New("not a duration such as 500ms, 5s or 1m30s")
		}
		return d, nil
	}, fields)
}

// Level binds name to a log level: debug, info, warn or error.
func (e *Env) Level(name, usage string, fields ...*slog.Level) {
	bind(e, name, usage, func(s string) (slog.Level, error) {
		switch strings.ToLower(s) {
		case "debug":
			return slog.LevelDebug, nil
		case "info":
			return slog.LevelInfo, nil
		case "warn":
			return slog.LevelWarn, nil
		case "error":
			return slog.LevelError, nil
		}
		return 0, errors.New("must be debug, info, warn or error")
	}, fields)
}

// Override records that source (a flag such as "--projection") set field
// to text after the environment was read, so that problems with the field
// name the flag.
func (e *Env) Override(source, text string, field any) {
	if path, ok := e.path(field); ok {
		e.byField[path] = source
	}
	e.set[source] = text
}

func bind[T any](e *Env, name, usage string, parse func(string) (T, error), fields []*T) {
	def := ""
	if len(fields) > 0 {
		def = format(*fields[0])
	}
	e.vars = append(e.vars, variable{name: name, def: def, usage: usage})
	for _, f := range fields {
		if path, ok := e.path(f); ok {
			e.byField[path] = name
		}
	}
	text, ok := e.lookup(name)
	if !ok {
		return
	}
	e.set[name] = text
	v, err := parse(text)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: %w", name, text, err))
		e.bad[name] = true
		return
	}
	for _, f := range fields {
		*f = v
	}
}

// path finds the field ptr points to in the configuration struct, by
// address and type, and returns its path ("Aggregator.LeaseTTL").
func (e *Env) path(ptr any) (string, bool) {
	p := reflect.ValueOf(ptr)
	var find func(v reflect.Value, prefix string) (string, bool)
	find = func(v reflect.Value, prefix string) (string, bool) {
		for i := range v.NumField() {
			f, sf := v.Field(i), v.Type().Field(i)
			// The kind tells a struct from its first field, at the same
			// address; a named string type binds as a string.
			if f.Addr().Pointer() == p.Pointer() && f.Kind() == p.Type().Elem().Kind() {
				return prefix + sf.Name, true
			}
			if f.Kind() == reflect.Struct && sf.IsExported() {
				if path, ok := find(f, prefix+sf.Name+"."); ok {
					return path, true
				}
			}
		}
		return "", false
	}
	return find(e.root, "")
}

// Check returns every problem: the variables that did not parse, and the
// problems in invalid (the configuration's Validate result) told in the
// names of the variables or flags that set the fields. It returns nil if
// there are none.
func (e *Env) Check(invalid error) error {
	problems := append([]error(nil), e.errs...)
	seen := map[string]bool{}
	for _, p := range Problems(invalid) {
		var fe *FieldError
		if !errors.As(p, &fe) {
			problems = append(problems, p)
			continue
		}
		name, ok := e.byField[fe.Field]
		if !ok {
			problems = append(problems, p)
			continue
		}
		if e.bad[name] {
			continue // reported as unparsable; the field holds its default
		}
		msg := fmt.Sprintf("%s is unset: %s", name, fe.Problem)
		if def := format(fe.Value); def != "" {
			msg = fmt.Sprintf("%s is unset (default %s): %s", name, def, fe.Problem)
		}
		if text, set := e.set[name]; set {
			msg = fmt.Sprintf("%s=%q: %s", name, text, fe.Problem)
		}
		// Fields that share a variable report a problem of the value once.
		if !seen[msg] {
			seen[msg] = true
			problems = append(problems, errors.New(msg))
		}
	}
	return errors.Join(problems...)
}

// format writes a value as a user would: 2m rather than 2m0s, info
// rather than INFO.
func format(v any) string {
	switch v := v.(type) {
	case time.Duration:
		s := v.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	case slog.Level:
		return strings.ToLower(v.String())
	}
	return fmt.Sprint(v)
}

// Usage writes a table of the bound variables, their defaults and what
// they mean.
func (e *Env) Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  VARIABLE\tDEFAULT\tMEANING\n")
	for _, v := range e.vars {
		def := v.def
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.name, def, v.usage)
	}
	return tw.Flush()
}
