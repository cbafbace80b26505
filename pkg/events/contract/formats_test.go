package contract

import (
	"strings"
	"testing"
)

// formatSeeds are values at the edges of the formats the schemas use.
var formatSeeds = []string{
	"", "6c0e7a3e-8a51-4c3f-9a4c-1b2d3e4f5a60", "6C0E7A3E-8A51-4C3F-9A4C-1B2D3E4F5A60", "6c0e7a3e8a514c3f9a4c1b2d3e4f5a60",
	"6c0e7a3e-8a51-4c3f-9a4c-1b2d3e4f5a6", "6c0e7a3e-8a51-4c3f-9a4c-1b2d3e4f5a6g", "6c0e7a3e-8a51-4c3f-9a4c1-b2d3e4f5a60",
	"6c0e7a3e-8a51-4c3f-9a4c-1b2d3e4f5a6é", "--------------------------------",
	"2026-03-14T09:26:53.589Z", "2026-03-14t09:26:53z", "2026-03-14T09:26:53+01:00", "2026-03-14T09:26:53-23:59",
	"2026-02-29T00:00:00Z", "2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "0000-02-29T00:00:00Z",
	"2026-04-31T00:00:00Z", "2026-12-31T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-01-00T00:00:00Z",
	"2026-03-14T23:59:60Z", "2026-03-14T23:59:60+01:00", "2026-03-14T00:59:60+01:00", "2026-03-14T22:59:60-01:00",
	"2026-03-14T23:59:61Z", "2026-03-14T24:00:00Z", "2026-03-14T23:60:00Z", "2026-03-14T+9:+6:+3Z", "2026-03-14T-0:-0:-0Z",
	"2026-03-14T-1:00:00Z", "2026-03-14T09:26:53+-0:+1", "2026-03-14T09:26:53+24:00", "2026-03-14T09:26:53.Z",
	"2026-03-14T09:26:53.5.5Z", "2026-03-14T09:26:53+0100", "2026-03-14T09:26:53", "2026-03-14 09:26:53Z",
	"+026-03-14T09:26:53Z", "2026-3-14T09:26:53Z", "2026-03-14T09:26:53.123456789012Z", "2026-03-14T9:26:53Z",
	"2026-03-14T09::6:53Z", "2026-03-14T0:::::::Z", "2026-03-14T09:26:53*01:00", "2026-03-14T09:26:53+01:0a",
	"ada@example.com", "ada@-example.com", "ada@example-.com", "ada@ex_ample.com", "ada@", "@example.com", "@",
	"ada.example.com", `"a b"@example.com`, `"a\b"@example.com`, `"@example.com`, `""@example.com`, "a..b@example.com",
	".a@example.com", "a.@example.com", "a@[127.0.0.1]", "a@[IPv6:::1]", "a@[IPv6:fe80::1%eth0]", "a@[IPv6:1.2.3.4]",
	"a@[+1.2.3.4]", "a@[01.2.3.4]", "a@[1.2.3.256]", "a@[1.2.3]", "a@[]", "a@[", "a@]", "a@localhost.", "a@localhost..",
	"a@.", "josé@example.com", "a@exämple.com", "a@b@c.com", "!#$%&'*+-/=?^_`{|}~@example.com",
	strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 65) + "@example.com",
	"a@" + strings.Repeat("b", 63) + ".com", "a@" + strings.Repeat("b", 64) + ".com",
	"a@" + strings.Repeat("b.", 126) + "c", "a@" + strings.Repeat("b.", 127) + "c", strings.Repeat("a", 64) + "@" + strings.Repeat("b.", 94) + "c",
}

// FuzzFormats holds each ported format to the reference validator's own.
func FuzzFormats(f *testing.F) {
	for _, s := range formatSeeds {
		f.Add(s)
	}
	ref := map[string]func(any) error{}
	for name := range fastFormats {
		ref[name] = compileTest(f, `{"format": "`+name+`"}`).Validate
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name, port := range fastFormats {
			want := ref[name](s)
			if got := port([]byte(s)); got != (want == nil) {
				t.Errorf("%s %q: port says %v, reference %v", name, s, got, want)
			}
		}
	})
}
