package contract

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"regexp"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// fastSchema is a compiled schema that checks an event where it lies, in
// its bytes: a walk of the document with [scanner], without building a
// value, that accepts exactly what the reference validator
// (santhosh-tekuri/jsonschema, on the value encoding/json decodes) accepts.
// It only answers yes or no: [Validate] asks the reference validator why a
// document failed, so the errors are the reference's, and the rare failure
// pays what every event paid before (20 to 40 µs and some 300 allocations,
// against 1 to 3 µs and none here: BenchmarkValidate).
//
// It knows only the keywords the schemas use (fastFields); [compileFast]
// refuses a schema with any other, which then goes to the reference
// validator alone, and a test fails until this file learns the keyword.
type fastSchema struct {
	types     jsonTypes   // the types allowed; 0 for any
	mustEqual [][]literal // const and enum: the value equals a literal of each list
	format    func([]byte) bool

	// strings
	minLength, maxLength int // in characters; -1 for none
	pattern              *regexp.Regexp

	// numbers
	minimum, maximum *bound

	// objects
	properties map[string]int // property name -> index in children and bit in required
	children   []*fastSchema
	required   uint64
	closed     bool // additionalProperties false

	// arrays
	items              *fastSchema // nil: any items
	minItems, maxItems int         // maxItems -1 for none
}

// jsonTypes is a set of JSON types, one bit each.
type jsonTypes uint8

const (
	typeNull jsonTypes = 1 << iota
	typeBoolean
	typeNumber
	typeInteger // a number with an integer value (1, 1.0, 1e2)
	typeString
	typeArray
	typeObject
)

var typeNames = map[string]jsonTypes{
	"null": typeNull, "boolean": typeBoolean, "number": typeNumber, "integer": typeInteger,
	"string": typeString, "array": typeArray, "object": typeObject,
}

// fastFormats are the formats fastSchema checks: ports of the reference
// validator's own functions that work on bytes and allocate nothing
// (formats.go; FuzzFormats holds them to the originals).
var fastFormats = map[string]func([]byte) bool{
	"uuid":      isUUID,
	"date-time": isDateTime,
	"email":     isEmail,
}

// fastFields are the fields of a compiled [jsonschema.Schema] that
// fastSchema enforces or that enforce nothing (identity, annotations). Any
// other field set on a schema is a keyword fastSchema does not implement.
var fastFields = map[string]bool{
	"DraftVersion": true, "Location": true, "ID": true,
	"Title": true, "Description": true, "Default": true, "Comment": true,
	"ReadOnly": true, "WriteOnly": true, "Examples": true, "Deprecated": true,
	"Types": true, "Const": true, "Enum": true, "Format": true,
	"MinLength": true, "MaxLength": true, "Pattern": true,
	"Minimum": true, "Maximum": true,
	"Properties": true, "Required": true, "AdditionalProperties": true,
	"Items2020": true, "MinItems": true, "MaxItems": true,
}

// fastSchemas compiles every schema the fast way, once, from the reference
// validator's compiled schemas, so both read each keyword the same way. A
// schema compileFast refuses is left out.
var fastSchemas = sync.OnceValues(func() (map[schemaKey]*fastSchema, error) {
	schemas, err := compiled()
	if err != nil {
		return nil, err
	}
	out := make(map[schemaKey]*fastSchema, len(schemas))
	for k, s := range schemas {
		if f, err := compileFast(s, ""); err == nil {
			out[k] = f
		}
	}
	return out, nil
})

// compileFast compiles s, found at schema location at, or says which
// keyword it cannot check.
func compileFast(s *jsonschema.Schema, at string) (*fastSchema, error) {
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if v.Type().Field(i).IsExported() && !fastFields[name] && !v.Field(i).IsZero() {
			return nil, fmt.Errorf("%s: keyword %s is not implemented by the fast validator", cmp.Or(at, "/"), name)
		}
	}
	if s.DraftVersion != 2020 {
		return nil, fmt.Errorf("%s: draft %d, the fast validator implements 2020-12", cmp.Or(at, "/"), s.DraftVersion)
	}
	f := &fastSchema{minLength: -1, maxLength: -1, maxItems: -1}
	if s.Types != nil {
		for _, t := range s.Types.ToStrings() {
			f.types |= typeNames[t]
		}
	}
	if s.Const != nil {
		l, err := newLiteral(*s.Const, at+"/const")
		if err != nil {
			return nil, err
		}
		f.mustEqual = append(f.mustEqual, []literal{l})
	}
	if s.Enum != nil {
		var ls []literal
		for _, v := range s.Enum.Values {
			l, err := newLiteral(v, at+"/enum")
			if err != nil {
				return nil, err
			}
			ls = append(ls, l)
		}
		f.mustEqual = append(f.mustEqual, ls)
	}
	if s.Format != nil {
		if f.format = fastFormats[s.Format.Name]; f.format == nil {
			return nil, fmt.Errorf("%s/format: format %q is not implemented by the fast validator", at, s.Format.Name)
		}
	}
	if s.MinLength != nil {
		f.minLength = *s.MinLength
	}
	if s.MaxLength != nil {
		f.maxLength = *s.MaxLength
	}
	if s.Pattern != nil {
		re, ok := s.Pattern.(*regexp.Regexp)
		if !ok {
			return nil, fmt.Errorf("%s/pattern: not a Go regexp", at)
		}
		f.pattern = re
	}
	if s.Minimum != nil {
		f.minimum = newBound(s.Minimum)
	}
	if s.Maximum != nil {
		f.maximum = newBound(s.Maximum)
	}
	if err := f.compileObject(s, at); err != nil {
		return nil, err
	}
	if s.MinItems != nil {
		f.minItems = *s.MinItems
	}
	if s.MaxItems != nil {
		f.maxItems = *s.MaxItems
	}
	if s.Items2020 != nil {
		items, err := compileFast(s.Items2020, at+"/items")
		if err != nil {
			return nil, err
		}
		f.items = items
	}
	return f, nil
}

// compileObject compiles the object keywords of s.
func (f *fastSchema) compileObject(s *jsonschema.Schema, at string) error {
	switch a := s.AdditionalProperties.(type) {
	case nil:
	case bool:
		f.closed = !a
	default:
		return fmt.Errorf("%s/additionalProperties: a schema is not implemented by the fast validator", at)
	}
	if len(s.Properties)+len(s.Required) > 64 {
		return fmt.Errorf("%s: more than 64 properties", at)
	}
	names := make([]string, 0, len(s.Properties)+len(s.Required))
	for name := range s.Properties {
		names = append(names, name)
	}
	sort.Strings(names) // stable indexes, for reading a fastSchema in a debugger
	for _, name := range s.Required {
		if _, ok := s.Properties[name]; !ok {
			names = append(names, name) // required, any value
		}
	}
	f.properties = make(map[string]int, len(names))
	for _, name := range names {
		if _, dup := f.properties[name]; dup {
			continue
		}
		var child *fastSchema
		if p := s.Properties[name]; p != nil {
			var err error
			if child, err = compileFast(p, at+"/properties/"+escapePointer(name)); err != nil {
				return err
			}
		}
		f.properties[name] = len(f.children)
		f.children = append(f.children, child)
	}
	for _, name := range s.Required {
		f.required |= 1 << f.properties[name]
	}
	return nil
}

// accepts reports whether data is one JSON value that passes f.
func (f *fastSchema) accepts(data []byte) bool {
	s := scanner{data: data}
	ok := s.value(f)
	s.ws()
	return ok && !s.bad && s.pos == len(data)
}

// value consumes one value and reports whether it passes f; nil passes
// anything.
func (s *scanner) value(f *fastSchema) bool {
	if f == nil {
		s.skip()
		return true
	}
	switch s.peek() {
	case '{':
		return s.object(f)
	case '[':
		return s.array(f)
	case '"':
		v := s.stringValue()
		return !s.bad && f.string(v)
	case 't':
		s.literal("true")
		return f.boolean(true)
	case 'f':
		s.literal("false")
		return f.boolean(false)
	case 'n':
		s.literal("null")
		return f.allows(typeNull) && f.equals(literal{kind: typeNull})
	default:
		lit := s.number()
		return !s.bad && f.number(lit)
	}
}

func (f *fastSchema) allows(t jsonTypes) bool { return f.types == 0 || f.types&t != 0 }

// object consumes an object and reports whether it passes f.
func (s *scanner) object(f *fastSchema) bool {
	if !f.allows(typeObject) || len(f.mustEqual) > 0 { // no literal is an object
		s.skip()
		return false
	}
	s.enter()
	if s.bad || !s.first('}') {
		return !s.bad && f.required == 0
	}
	var seen, failed uint64
	open := true
	for {
		key := s.stringValue()
		s.expect(':')
		if s.bad {
			return false
		}
		if i, ok := f.properties[string(key)]; ok {
			// A name given twice has its last value, as in the map the
			// reference validator sees.
			bit := uint64(1) << i
			seen |= bit
			if s.value(f.children[i]) {
				failed &^= bit
			} else {
				failed |= bit
			}
		} else {
			s.skip()
			open = open && !f.closed
		}
		if s.bad || !s.next('}') {
			break
		}
	}
	return !s.bad && open && failed == 0 && f.required&^seen == 0
}

// array consumes an array and reports whether it passes f.
func (s *scanner) array(f *fastSchema) bool {
	if !f.allows(typeArray) || len(f.mustEqual) > 0 { // no literal is an array
		s.skip()
		return false
	}
	s.enter()
	if s.bad || !s.first(']') {
		return !s.bad && f.minItems == 0
	}
	ok, n := true, 0
	for {
		ok = s.value(f.items) && ok
		n++
		if s.bad || !s.next(']') {
			break
		}
	}
	return !s.bad && ok && n >= f.minItems && (f.maxItems < 0 || n <= f.maxItems)
}

// string reports whether the string v (decoded) passes f.
func (f *fastSchema) string(v []byte) bool {
	if !f.allows(typeString) || !f.equals(literal{kind: typeString, str: v}) {
		return false
	}
	if f.format != nil && !f.format(v) {
		return false
	}
	if f.minLength >= 0 || f.maxLength >= 0 {
		n := utf8.RuneCount(v)
		if n < f.minLength || (f.maxLength >= 0 && n > f.maxLength) {
			return false
		}
	}
	return f.pattern == nil || f.pattern.Match(v)
}

func (f *fastSchema) boolean(b bool) bool {
	return f.allows(typeBoolean) && f.equals(literal{kind: typeBoolean, b: b})
}

// number reports whether the number literal lit passes f.
func (f *fastSchema) number(lit []byte) bool {
	n := number{lit: lit}
	n.int, n.small = smallInt(lit)
	if !f.allows(typeNumber) && !(f.types&typeInteger != 0 && n.integer()) {
		return false
	}
	if len(f.mustEqual) > 0 && !f.equals(literal{kind: typeNumber, num: &n}) {
		return false
	}
	if f.minimum != nil {
		if c, ok := n.cmp(f.minimum); !ok || c < 0 {
			return false
		}
	}
	if f.maximum != nil {
		if c, ok := n.cmp(f.maximum); !ok || c > 0 {
			return false
		}
	}
	return true
}

// equals reports whether v equals a literal of every list in mustEqual.
func (f *fastSchema) equals(v literal) bool {
	for _, list := range f.mustEqual {
		found := false
		for i := range list {
			if list[i].equal(&v) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// literal is a const or enum value of a schema, or a value of a document
// being compared to one.
type literal struct {
	kind jsonTypes // typeNull, typeBoolean, typeNumber or typeString
	str  []byte
	b    bool
	num  *number
}

func newLiteral(v any, at string) (literal, error) {
	switch v := v.(type) {
	case nil:
		return literal{kind: typeNull}, nil
	case bool:
		return literal{kind: typeBoolean, b: v}, nil
	case string:
		return literal{kind: typeString, str: []byte(v)}, nil
	case json.Number:
		n := &number{lit: []byte(v)}
		n.int, n.small = smallInt(n.lit)
		if _, ok := n.exact(); !ok {
			return literal{}, fmt.Errorf("%s: number %s", at, v)
		}
		return literal{kind: typeNumber, num: n}, nil
	}
	return literal{}, fmt.Errorf("%s: a %T value is not implemented by the fast validator", at, v)
}

// equal compares as the reference validator does: numbers by value (1 and
// 1.0 are equal), strings byte for byte.
func (l *literal) equal(v *literal) bool {
	if l.kind != v.kind {
		return false
	}
	switch l.kind {
	case typeBoolean:
		return l.b == v.b
	case typeString:
		return string(l.str) == string(v.str)
	case typeNumber:
		if l.num.small && v.num.small {
			return l.num.int == v.num.int
		}
		a, ok1 := l.num.exact()
		b, ok2 := v.num.exact()
		return ok1 && ok2 && a.Cmp(b) == 0
	}
	return true // null
}

// number is a number literal of a document, as the checks compare it: as
// an int64 when it is a short integer literal, else as the big.Rat the
// reference validator makes of it (which allocates).
type number struct {
	lit    []byte
	int    int64
	small  bool // lit is an integer of at most 18 digits, whose value is int
	rat    *big.Rat
	ratOK  bool
	parsed bool
}

// smallInt parses lit when it is an integer of at most 18 digits.
func smallInt(lit []byte) (int64, bool) {
	digits := lit
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if lit[0] == '-' {
		n = -n
	}
	return n, true
}

// exact is the literal's value, if big.Rat can hold it (an exponent over a
// million is refused).
func (n *number) exact() (*big.Rat, bool) {
	if !n.parsed {
		n.rat, n.ratOK = new(big.Rat).SetString(string(n.lit))
		n.parsed = true
	}
	return n.rat, n.ratOK
}

// integer reports whether the number has an integer value, as the
// reference validator decides it (big.Rat IsInt).
func (n *number) integer() bool {
	if n.small {
		return true
	}
	r, ok := n.exact()
	return ok && r.IsInt()
}

// cmp compares the number with a bound: -1, 0 or 1, and false when the
// number cannot be compared (big.Rat cannot hold it).
func (n *number) cmp(b *bound) (int, bool) {
	if n.small && b.small {
		switch {
		case n.int < b.int:
			return -1, true
		case n.int > b.int:
			return 1, true
		}
		return 0, true
	}
	r, ok := n.exact()
	if !ok {
		return 0, false
	}
	return r.Cmp(b.rat), true
}

// bound is a schema's minimum or maximum.
type bound struct {
	rat   *big.Rat
	int   int64
	small bool // rat is an integer of at most 18 digits, int
}

func newBound(r *big.Rat) *bound {
	b := &bound{rat: r}
	if r.IsInt() && r.Num().IsInt64() {
		if i := r.Num().Int64(); i > -1e18 && i < 1e18 {
			b.int, b.small = i, true
		}
	}
	return b
}
