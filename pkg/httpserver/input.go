package httpserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
)

// ProblemValidation is the problem type (RFC 9457) of a 422 whose errors
// name each invalid field.
const ProblemValidation = "urn:orderflow:problem:validation-failed"

// InputError is a request refused for what it carries, before it reaches
// a database: a 4xx with a detail and, for a 422, the fields at fault.
// Handlers return it from their decoding steps and their error writer
// answers it with [InputError.Problem].
type InputError struct {
	Status int
	Detail string
	Fields []FieldError
}

// Error returns the detail.
func (e *InputError) Error() string { return e.Detail }

// Problem is e as problem+json; a 422 is typed [ProblemValidation].
func (e *InputError) Problem() Problem {
	p := Problem{Status: e.Status, Detail: e.Detail, Errors: e.Fields}
	if e.Status == http.StatusUnprocessableEntity {
		p.Type, p.Title = ProblemValidation, "Validation failed"
	}
	return p
}

// Invalid is the 422 of a request whose fields break the rules: detail
// says what was refused, fields name every field at fault.
func Invalid(detail string, fields []FieldError) *InputError {
	return &InputError{Status: http.StatusUnprocessableEntity, Detail: detail, Fields: fields}
}

// BadRequest is a 400 with detail.
func BadRequest(detail string) *InputError {
	return &InputError{Status: http.StatusBadRequest, Detail: detail}
}

// ReadBody reads r's body, refusing one over limit bytes with a 413
// *InputError before more is read.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return nil, &InputError{Status: http.StatusRequestEntityTooLarge,
				Detail: fmt.Sprintf("the body must not exceed %d bytes", limit)}
		}
		return nil, BadRequest("reading the body: " + err.Error())
	}
	return body, nil
}

// DecodeObject parses body as one JSON object, its members undecoded.
// Anything else is a 400 *InputError saying why: a body that is not
// Unicode text (invalid UTF-8, or a \u escape of a lone UTF-16 surrogate:
// encoding/json would turn either into U+FFFD without a word, so the
// service would store something the client never sent), malformed JSON,
// trailing data, or a JSON value that is not an object.
func DecodeObject(body []byte) (map[string]json.RawMessage, error) {
	if err := checkUnicode(body); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	// json.Unmarshal checks the whole input first, so trailing data is a
	// syntax error too.
	if err := json.Unmarshal(body, &top); err != nil {
		var syn *json.SyntaxError
		switch {
		case errors.As(err, &syn):
			return nil, BadRequest(fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn))
		case errors.As(err, new(*json.UnmarshalTypeError)):
			return nil, BadRequest("the body must be a JSON object")
		default:
			return nil, BadRequest(fmt.Sprintf("malformed JSON: %v", err))
		}
	}
	if top == nil {
		return nil, BadRequest("the body must be a JSON object, not null")
	}
	return top, nil
}

// checkUnicode refuses a body with invalid UTF-8 or a \u escape of a lone
// surrogate. A backslash outside a string is invalid JSON anyway, so the
// escapes need no full parse to be found.
func checkUnicode(body []byte) error {
	if !utf8.Valid(body) {
		for i := 0; i < len(body); {
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 {
				return BadRequest(fmt.Sprintf("the body is not valid UTF-8 (byte %d is not)", i))
			}
			i += size
		}
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' || i+1 == len(body) {
			continue
		}
		i++ // the escaped byte: "\\u0041" is a backslash and "u0041"
		r, ok := escapedRune(body[i:])
		if !ok || !utf16.IsSurrogate(r) {
			continue
		}
		if next, ok := escapedRune(body[min(i+6, len(body)):]); ok && r < 0xdc00 && next >= 0xdc00 && next <= 0xdfff && body[i+5] == '\\' {
			i += 10 // past the pair, one character
			continue
		}
		return BadRequest(fmt.Sprintf("the body is not Unicode text: %s at byte %d is half a UTF-16 surrogate pair", body[i-1:i+5], i-1))
	}
	return nil
}

// escapedRune decodes "uXXXX" at the start of b.
func escapedRune(b []byte) (rune, bool) {
	if len(b) < 5 || b[0] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[1:5]), 16, 16)
	return rune(n), err == nil
}

// UnknownFields returns a field error for each member of m not in known,
// in sorted order, named prefix+key. Keys match exactly, unlike
// encoding/json's case-insensitive struct matching: a misspelt field must
// not be silently ignored.
func UnknownFields(m map[string]json.RawMessage, known []string, prefix string) []FieldError {
	var unknown []string
	for k := range m {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	var errs []FieldError
	for _, k := range unknown {
		errs = append(errs, FieldError{Field: prefix + k, Message: "is not a known field"})
	}
	return errs
}

// PathParam returns r's chi path parameter name, percent-decoded once.
// chi matches the escaped path when the request has one (r.URL.RawPath,
// set when the client escaped what Go would not, e.g. "A%2FB") and then
// hands the parameter out still escaped; otherwise it is decoded already.
// A parameter that is not valid percent-encoding is a 400 *InputError.
// The value is not otherwise checked: it may hold any bytes, NUL and
// invalid UTF-8 included, for the caller's field rule to refuse.
func PathParam(r *http.Request, name string) (string, error) {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v, nil
	}
	v, err := url.PathUnescape(v)
	if err != nil {
		return "", BadRequest(fmt.Sprintf("the %s in the path is not valid percent-encoding", name))
	}
	return v, nil
}

// PathField is PathParam for a parameter with a field rule: check's error,
// when the value breaks the rule, comes back as a field error naming the
// parameter, for the caller to answer with [Invalid], alone or beside the
// body's field errors.
func PathField(r *http.Request, name string, check func(string) error) (string, []FieldError, error) {
	v, err := PathParam(r, name)
	if err != nil {
		return "", nil, err
	}
	if err := check(v); err != nil {
		return v, []FieldError{{Field: name, Message: err.Error()}}, nil
	}
	return v, nil, nil
}

// PathValue is PathField for a handler with nothing else to check: a
// value breaking the rule is a 422 *InputError naming the parameter.
func PathValue(r *http.Request, name string, check func(string) error) (string, error) {
	v, fieldErrs, err := PathField(r, name, check)
	if err == nil && len(fieldErrs) > 0 {
		err = Invalid(fmt.Sprintf("the %s in the path breaks the rules listed in errors", name), fieldErrs)
	}
	return v, err
}
