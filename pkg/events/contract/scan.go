package contract

import (
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is encoding/json's nesting limit (its maxNestingDepth): the
// reference validator's decoder refuses a document nested deeper, so the
// scanner does too.
const maxDepth = 10000

// scanner reads one JSON document in place, as the reference validator's
// decoder (encoding/json with UseNumber) reads it: the same grammar, the same
// nesting limit, strings coerced to UTF-8 the same way. It never builds a
// value; the walk in check.go asks it for one token at a time. A syntax error
// sets bad, after which every result is meaningless and callers return.
type scanner struct {
	data  []byte
	pos   int
	depth int
	bad   bool
}

// ws skips JSON whitespace.
func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end (a NUL is
// never valid between tokens either).
func (s *scanner) peek() byte {
	s.ws()
	if s.pos == len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

// expect consumes c after optional whitespace.
func (s *scanner) expect(c byte) {
	if s.peek() != c {
		s.bad = true
		return
	}
	s.pos++
}

// enter consumes the opening byte of an object or array.
func (s *scanner) enter() {
	s.pos++
	s.depth++
	if s.depth > maxDepth {
		s.bad = true
	}
}

// next consumes the ',' or closing byte after a member or element and
// reports whether another one follows.
func (s *scanner) next(closing byte) bool {
	switch s.peek() {
	case ',':
		s.pos++
		return true
	case closing:
		s.pos++
		s.depth--
		return false
	}
	s.bad = true
	return false
}

// first reports, just after the opening byte, whether the container has a
// member or element; an empty one is consumed whole.
func (s *scanner) first(closing byte) bool {
	if s.peek() == closing {
		s.pos++
		s.depth--
		return false
	}
	return true
}

// str consumes a string and returns its bytes between the quotes, raw, and
// whether they are already its value: no escape and valid UTF-8. Otherwise
// [unquote] gives the value.
func (s *scanner) str() (raw []byte, clean bool) {
	if s.peek() != '"' {
		s.bad = true
		return nil, false
	}
	s.pos++
	start := s.pos
	clean = true
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			raw = s.data[start:s.pos]
			s.pos++
			if !clean || !utf8.Valid(raw) {
				return raw, false
			}
			return raw, true
		case c < ' ':
			s.bad = true
			return nil, false
		case c == '\\':
			clean = false
			s.pos++
			if s.pos == len(s.data) {
				s.bad = true
				return nil, false
			}
			switch s.data[s.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos++
			case 'u':
				if hex4(s.data[s.pos+1:]) < 0 {
					s.bad = true
					return nil, false
				}
				s.pos += 5
			default:
				s.bad = true
				return nil, false
			}
		default:
			s.pos++
		}
	}
	s.bad = true
	return nil, false
}

// hex4 is the value of the four hex digits b starts with, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unquote decodes the raw bytes of a string [scanner.str] found valid, the
// way encoding/json does: escapes resolved, a surrogate pair joined, a lone
// surrogate and every byte that is not UTF-8 replaced by U+FFFD. It
// allocates, which only strings with escapes or bad UTF-8 pay.
func unquote(raw []byte) []byte {
	out := make([]byte, 0, len(raw)+2*utf8.UTFMax)
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			i++
			switch raw[i] {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := hex4(raw[i+1:])
				i += 5
				if utf16.IsSurrogate(r) {
					var r2 rune = -1
					if i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						r2 = hex4(raw[i+2:])
					}
					if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
					r = unicode.ReplacementChar
				}
				out = utf8.AppendRune(out, r)
				continue
			default: // '"', '\\', '/'
				out = append(out, raw[i])
			}
			i++
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			out = utf8.AppendRune(out, r)
			i += size
		}
	}
	return out
}

// stringValue consumes a string and returns its value, in place when it
// needs no decoding.
func (s *scanner) stringValue() []byte {
	raw, clean := s.str()
	if clean || s.bad {
		return raw
	}
	return unquote(raw)
}

// number consumes a number and returns its literal, which is what the
// reference validator sees (a json.Number).
func (s *scanner) number() []byte {
	start := s.pos
	d := s.data
	i := s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		i = digits(d, i)
	default:
		s.bad = true
		return nil
	}
	if i < len(d) && d[i] == '.' {
		if j := digits(d, i+1); j > i+1 {
			i = j
		} else {
			s.bad = true
			return nil
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if j := digits(d, i); j > i {
			i = j
		} else {
			s.bad = true
			return nil
		}
	}
	s.pos = i
	return d[start:i]
}

// digits returns the index of the first byte at or after i of d that is
// not an ASCII digit.
func digits(d []byte, i int) int {
	for i < len(d) && '0' <= d[i] && d[i] <= '9' {
		i++
	}
	return i
}

// literal consumes true, false or null, whichever word is.
func (s *scanner) literal(word string) {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		s.bad = true
		return
	}
	s.pos += len(word)
}

// skip consumes any one value, checking only its syntax.
func (s *scanner) skip() {
	switch s.peek() {
	case '{':
		s.enter()
		if s.bad || !s.first('}') {
			return
		}
		for {
			s.str()
			s.expect(':')
			s.skip()
			if s.bad || !s.next('}') {
				return
			}
		}
	case '[':
		s.enter()
		if s.bad || !s.first(']') {
			return
		}
		for {
			s.skip()
			if s.bad || !s.next(']') {
				return
			}
		}
	case '"':
		s.str()
	case 't':
		s.literal("true")
	case 'f':
		s.literal("false")
	case 'n':
		s.literal("null")
	default:
		s.number()
	}
}
