package contract

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// FuzzScanner holds the scanner to what the reference validator's decoder
// accepts as one JSON document, and unquote to how encoding/json decodes a
// string.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		``, ` `, `{}`, `[]`, `{"a":1}`, `{"a":1,}`, `[1,]`, `{"a" 1}`, `{1:1}`, `[01]`, `[-]`, `[-0]`, `[1.]`, `[.1]`, `[1e]`,
		`[1e+]`, `[1E-7]`, `[tru]`, `[true]`, `[nul]`, `[null,false]`, `"a`, `"\x"`, `"\u12"`, `"\u12G4"`, "\"\x1f\"", "\"\x7f\"",
		`"\ud800"`, `"\ud800\udc00"`, `"\udc00\ud800"`, `"\ud800\u"`, `"\ud800\\"`, `"\ud800\n"`, "\"\xff\xfe\"", "\"\xed\xa0\x80\"",
		"\"\xf4\x90\x80\x80\"", "\"\xc0\xaf\"", `{"a":{"b":[1,{"c":"d"}]}}`, `{} {}`, `{}x`, "\ufeff{}", "{}\x00",
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := scanner{data: data}
		s.skip()
		s.ws()
		got := !s.bad && s.pos == len(data)
		_, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if got != (err == nil) {
			t.Errorf("%q: scanner accepts %v, decoder says %v", data, got, err)
		}

		quoted := append(append([]byte{'"'}, data...), '"')
		s = scanner{data: quoted}
		raw, clean := s.str()
		var want string
		if err := json.Unmarshal(quoted, &want); (err == nil) != (!s.bad && s.pos == len(quoted)) {
			t.Fatalf("%q: scanner bad %v, encoding/json says %v", quoted, s.bad, err)
		} else if err != nil {
			return
		}
		v := raw
		if !clean {
			v = unquote(raw)
		}
		if string(v) != want {
			t.Errorf("%q: unquote gives %q, encoding/json %q", quoted, v, want)
		}
	})
}
