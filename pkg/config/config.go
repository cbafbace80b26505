// Package config reads service configuration from environment variables.
//
// Guarantees:
//   - Every problem names its variable and shows the offending value, and
//     all problems found are reported together by Env.Err as one error whose
//     message is a single line, for example
//     config: WAREHOUSE_SHIP_DELAY: "abc" is not a duration (e.g. 2s, 10m)
//     so a service fails at start with one clear line.
//   - A variable that is unset or set to the empty string takes its default.
//     Values are used as written: surrounding spaces are not trimmed and make
//     a number or duration invalid.
//
// Not provided: defaults and validation of a service's own settings (they
// live in the service's Config), struct tags or reflection, config files.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/orderflow/orderflow/pkg/events/correlation"
)

// Env reads variables through a lookup function and collects the problems
// it finds, so that all of them are reported at once by Err. The zero value
// is not usable; use FromEnv or FromLookup. An Env is not safe for
// concurrent use.
type Env struct {
	lookup func(string) (string, bool)
	errs   []error
}

// FromEnv returns an Env reading the process environment.
func FromEnv() *Env {
	return FromLookup(os.LookupEnv)
}

// FromLookup returns an Env reading variables through lookup, which has the
// shape of os.LookupEnv; tests pass a map's lookup.
func FromLookup(lookup func(string) (string, bool)) *Env {
	return &Env{lookup: lookup}
}

// VarError reports a variable whose value cannot be used.
type VarError struct {
	Name   string // the variable, e.g. "WAREHOUSE_SHIP_DELAY"
	Value  string // its value as set
	Reason string // what is wrong, e.g. "is not a duration (e.g. 2s, 10m)"
}

// Error returns e.g. `WAREHOUSE_SHIP_DELAY: "abc" is not a duration (e.g. 2s, 10m)`.
// A secret's value is never shown (Secret), and a URL's password is
// masked.
func (e *VarError) Error() string {
	return fmt.Sprintf("%s: %q %s", e.Name, Mask(e.Name, e.Value), e.Reason)
}

// Secret reports whether the variable name holds a secret: a password,
// secret, token or key (PAYMENTS_POSTGRES_PASSWORD, HTTP_API_KEYS,
// HTTP_JWT_HMAC_SECRET).
func Secret(name string) bool {
	for _, s := range []string{"PASSWORD", "SECRET", "TOKEN", "_KEY", "_KEYS"} {
		if strings.HasSuffix(name, s) || strings.Contains(name, s+"_") {
			return true
		}
	}
	return false
}

// Mask is value as it may be shown: "" for an empty one, "(hidden)" for a
// secret's, a URL with its password replaced by "xxxxx", else value.
func Mask(name, value string) string {
	switch {
	case value == "":
		return ""
	case Secret(name):
		return "(hidden)"
	}
	if u, err := url.Parse(value); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			return u.Redacted()
		}
	}
	return value
}

// value returns the variable's value, or "" and false when it is unset or
// empty.
func (e *Env) value(name string) (string, bool) {
	v, ok := e.lookup(name)
	return v, ok && v != ""
}

// String returns the variable's value, or def when it is unset or empty.
func (e *Env) String(name, def string) string {
	if v, ok := e.value(name); ok {
		return v
	}
	return def
}

// Int returns the variable as a decimal int, or def when it is unset or
// empty.
func (e *Env) Int(name string, def int) int {
	return int(e.parseInt(name, int64(def), strconv.IntSize))
}

// Int64 returns the variable as a decimal int64, or def when it is unset or
// empty.
func (e *Env) Int64(name string, def int64) int64 {
	return e.parseInt(name, def, 64)
}

func (e *Env) parseInt(name string, def int64, bits int) int64 {
	v, ok := e.value(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, bits)
	switch {
	case errors.Is(err, strconv.ErrRange):
		e.add(name, v, fmt.Sprintf("is out of range for a %d-bit integer", bits))
		return def
	case err != nil:
		e.add(name, v, "is not an integer")
		return def
	}
	return n
}

// Duration returns the variable as a time.Duration written the way
// time.ParseDuration reads it ("2s", "10m", "1h30m"), or def when it is
// unset or empty. Negative durations are rejected.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v, ok := e.value(name)
	if !ok {
		return def
	}
	d, err := ParseDuration(v)
	if err != nil {
		e.add(name, v, "is not a duration (e.g. 2s, 10m, 7d)")
		return def
	}
	if d < 0 {
		e.add(name, v, "is negative")
		return def
	}
	return d
}

// LogLevel returns the variable as a slog.Level ("debug", "info", "warn",
// "error", any case, optionally with an offset like "info+2"), or def parsed
// the same way when it is unset or empty. It panics if def is not a level:
// that is a programming error, not a configuration one.
func (e *Env) LogLevel(name, def string) slog.Level {
	var level slog.Level
	if v, ok := e.value(name); ok {
		if err := level.UnmarshalText([]byte(v)); err == nil {
			return level
		}
		e.add(name, v, "is not a log level (debug, info, warn, error)")
	}
	if err := level.UnmarshalText([]byte(def)); err != nil {
		panic(fmt.Sprintf("config: %s: default %q is not a log level", name, def))
	}
	return level
}

// OneOf returns the variable's value if it matches one of allowed (ignoring
// case; the allowed spelling is returned), or def when it is unset or empty.
// It panics if def is not among allowed: that is a programming error.
func (e *Env) OneOf(name, def string, allowed ...string) string {
	match := func(v string) (string, bool) {
		for _, a := range allowed {
			if strings.EqualFold(v, a) {
				return a, true
			}
		}
		return "", false
	}
	if v, ok := e.value(name); ok {
		if a, ok := match(v); ok {
			return a
		}
		e.add(name, v, "is not one of "+strings.Join(allowed, ", "))
	}
	if _, ok := match(def); !ok {
		panic(fmt.Sprintf("config: %s: default %q is not one of %q", name, def, allowed))
	}
	return def
}

// Reject records that the variable's current value is unusable for reason,
// for checks that belong to the caller, such as a range:
//
//	if n < 1 {
//		e.Reject("EMAIL_MAX_ATTEMPTS", "must be at least 1")
//	}
//
// The problem is reported by Err with the others.
func (e *Env) Reject(name, reason string) {
	v, _ := e.lookup(name)
	e.add(name, v, reason)
}

func (e *Env) add(name, value, reason string) {
	e.errs = append(e.errs, &VarError{Name: name, Value: value, Reason: reason})
}

// Err returns nil if every variable read so far was usable, and otherwise
// one error listing all problems on one line, in the order they were found.
// errors.As finds each *VarError in it.
func (e *Env) Err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return &envError{errs: append([]error(nil), e.errs...)}
}

type envError struct{ errs []error }

func (e *envError) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	for i, err := range e.errs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e *envError) Unwrap() []error { return e.errs }

// Log formats accepted by NewLogger.
const (
	FormatJSON = "json"
	FormatText = "text"
)

// NewLogger returns the logger a service logs with: lines in format
// (FormatText, or FormatJSON for anything else; read it with OneOf) at level
// and above, written to w, each carrying "service" and, when logged with a
// context that has one, "correlation_id" (see correlation.NewLogHandler).
func NewLogger(w io.Writer, service string, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == FormatText {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(correlation.NewLogHandler(h, service))
}

// ParseDuration is time.ParseDuration that also takes a leading count of
// days, for retention-sized values: "7d", "1d12h", "36h".
func ParseDuration(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.ParseUint(days, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		d += r
	}
	return d, nil
}
