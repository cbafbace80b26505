package contract

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// schemaFS holds every schema, one file per event and version:
// schemas/v<version>/<event name>.json. Embedding them ships each binary with
// the exact schemas it was tested against, so producer and consumer checks
// cannot depend on files present at run time.
//
//go:embed schemas/*/*.json
var schemaFS embed.FS

// ErrUnknownEvent is returned (wrapped) by [Validate] for an event name and
// version that have no schema.
var ErrUnknownEvent = errors.New("unknown event")

// ErrNotJSON is returned (wrapped) by [Validate] when data is not exactly one
// JSON value.
var ErrNotJSON = errors.New("not JSON")

// FieldError is one failed check of a [ValidationError].
type FieldError struct {
	// Path is the JSON pointer (RFC 6901) of the failing field, e.g.
	// "/items/0/quantity", or "" for the event as a whole.
	Path string
	// Message says what is wrong with it.
	Message string
}

// String returns "path: message".
func (f FieldError) String() string { return f.Path + ": " + f.Message }

// ValidationError reports an event that is JSON but fails its schema. Fields
// lists every failing field, so a dead-lettered record or a log line shows
// all that is wrong at once.
type ValidationError struct {
	// Event and Version name the schema the data failed.
	Event   string
	Version int
	// Fields is sorted by Path; a missing field is reported at its own path.
	Fields []FieldError
}

// Error names the event and every failing field.
func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid %s v%d: ", e.Event, e.Version)
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.String())
	}
	return b.String()
}

// schemaKey identifies one schema.
type schemaKey struct {
	name    string
	version int
}

// schemaFile is one embedded schema: its key, file path and raw bytes.
type schemaFile struct {
	schemaKey
	path string
	raw  []byte
}

// schemaID is the $id every schema must declare; the compiler registers each
// schema under it.
func schemaID(k schemaKey) string {
	return fmt.Sprintf("https://orderflow.dev/schemas/v%d/%s.json", k.version, k.name)
}

// schemaFiles lists the embedded schemas, sorted by name and version. It only
// reads the embedded file table, so doing it at init costs next to nothing,
// and Known and Schema never wait for compilation.
var schemaFiles, schemaIndex = mustIndexSchemas()

func mustIndexSchemas() ([]schemaFile, map[schemaKey]schemaFile) {
	paths, err := fs.Glob(schemaFS, "schemas/*/*.json")
	if err != nil {
		panic(err) // only for a malformed pattern
	}
	var files []schemaFile
	index := make(map[schemaKey]schemaFile, len(paths))
	for _, p := range paths {
		dir, file := path.Split(p)
		v, err := strconv.Atoi(strings.TrimPrefix(path.Base(dir), "v"))
		if err != nil || !strings.HasPrefix(path.Base(dir), "v") || v < 1 {
			// A build-time mistake in this package; its tests would fail at once.
			panic(fmt.Sprintf("contract: schema %s is not under schemas/v<version>/", p))
		}
		raw, err := schemaFS.ReadFile(p)
		if err != nil {
			panic(err)
		}
		f := schemaFile{schemaKey{strings.TrimSuffix(file, ".json"), v}, p, raw}
		files = append(files, f)
		index[f.schemaKey] = f
	}
	slices.SortFunc(files, func(a, b schemaFile) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.version, b.version))
	})
	return files, index
}

// compiled compiles every schema on first use, once: compiling costs far more
// than validating, and binaries that never validate (cmd/eventdoc) skip it.
var compiled = sync.OnceValues(func() (map[schemaKey]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// Off by default in 2020-12; on, so "email", "uuid" and "date-time" are
	// checked rather than only annotated.
	c.AssertFormat()
	for _, f := range schemaFiles {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(f.raw))
		if err != nil {
			return nil, fmt.Errorf("parse schema %s: %w", f.path, err)
		}
		if err := c.AddResource(schemaID(f.schemaKey), doc); err != nil {
			return nil, fmt.Errorf("add schema %s: %w", f.path, err)
		}
	}
	schemas := make(map[schemaKey]*jsonschema.Schema, len(schemaFiles))
	for _, f := range schemaFiles {
		s, err := c.Compile(schemaID(f.schemaKey))
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", f.path, err)
		}
		schemas[f.schemaKey] = s
	}
	return schemas, nil
})

// Known reports whether event name at version has a schema.
func Known(name string, version int) bool {
	_, ok := schemaIndex[schemaKey{name, version}]
	return ok
}

// Schema returns the JSON Schema of event name at version, as released.
// The bytes are a copy the caller may keep or change.
func Schema(name string, version int) ([]byte, bool) {
	f, ok := schemaIndex[schemaKey{name, version}]
	if !ok {
		return nil, false
	}
	return bytes.Clone(f.raw), true
}

// Validate checks data, the JSON of event name at version, against its
// schema. It returns an error wrapping [ErrUnknownEvent] when there is no
// such schema, one wrapping [ErrNotJSON] when data is not JSON, and a
// *[ValidationError] naming every failing field when data fails the schema.
// Fields the schema does not list are allowed. Safe for concurrent use.
//
// A valid event costs a walk of its bytes ([fastSchema]); the reference
// validator only runs to say why an event failed.
func Validate(name string, version int, data []byte) error {
	k := schemaKey{name, version}
	if _, ok := schemaIndex[k]; !ok {
		return fmt.Errorf("%w %s v%d", ErrUnknownEvent, name, version)
	}
	fast, err := fastSchemas()
	if err != nil {
		return err
	}
	if f := fast[k]; f != nil && f.accepts(data) {
		return nil
	}
	return validateReference(k, data)
}

// validateReference is [Validate] by santhosh-tekuri/jsonschema, on the
// value encoding/json decodes: what defines the rules, and what reports a
// failure field by field.
func validateReference(k schemaKey, data []byte) error {
	schemas, err := compiled()
	if err != nil {
		return err
	}
	// UnmarshalJSON keeps numbers as json.Number, so a large integer is
	// neither rounded nor mistaken for a float.
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%s v%d: %w: %w", k.name, k.version, ErrNotJSON, err)
	}
	err = schemas[k].Validate(v)
	var verr *jsonschema.ValidationError
	if errors.As(err, &verr) {
		return &ValidationError{Event: k.name, Version: k.version, Fields: fieldErrors(verr)}
	}
	return err
}

// printer renders the validator's messages; the library's default is
// English too, but not exported.
var printer = message.NewPrinter(language.English)

// fieldErrors flattens the validator's error tree to its leaves, the actual
// failed checks; inner nodes only say "validation failed" or follow a $ref.
func fieldErrors(root *jsonschema.ValidationError) []FieldError {
	var out []FieldError
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		at := jsonPointer(e.InstanceLocation)
		// The validator reports a missing field at its parent object;
		// report it at the field itself, which is what callers look for.
		if req, ok := e.ErrorKind.(*kind.Required); ok {
			for _, name := range req.Missing {
				out = append(out, FieldError{Path: at + "/" + escapePointer(name), Message: "missing required field"})
			}
			return
		}
		out = append(out, FieldError{Path: at, Message: e.ErrorKind.LocalizedString(printer)})
	}
	walk(root)
	slices.SortStableFunc(out, func(a, b FieldError) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Message, b.Message))
	})
	return slices.Compact(out)
}

// jsonPointer renders instance location tokens as an RFC 6901 pointer.
func jsonPointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapePointer(t))
	}
	return b.String()
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

func escapePointer(token string) string { return pointerEscaper.Replace(token) }
