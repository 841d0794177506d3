// Package fielderr is the error a component's Config validation returns:
// it names the Go field at fault, and the binary — the only place that
// knows the configuration file's schema — names the key that set it. It
// must not import any other package of the switch.
package fielderr

import (
	"errors"
	"fmt"
)

// Error is a bad value of one field of a Config.
type Error struct {
	Field string // the Config field, as named in Go ("TimerC", "Flood.Ban")
	Err   error
}

// New returns an Error for field with a message formatted from format and
// args (which may wrap an error with %w).
func New(field, format string, args ...any) error {
	return &Error{Field: field, Err: fmt.Errorf(format, args...)}
}

// In prefixes the field of an Error in err's chain with parent (for a
// nested Config: In("Flood", err) turns "Ban" into "Flood.Ban"); other
// errors are returned as they are.
func In(parent string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Field: parent + "." + e.Field, Err: e.Err}
	}
	return err
}

func (e *Error) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Named returns err with its field replaced by the key keys maps it to, or
// by prefix and the field when keys has none; other errors get prefix.
func Named(prefix string, keys map[string]string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	if k, ok := keys[e.Field]; ok {
		return fmt.Errorf("%s: %w", k, e.Err)
	}
	return fmt.Errorf("%s (%s): %w", prefix, e.Field, e.Err)
}
