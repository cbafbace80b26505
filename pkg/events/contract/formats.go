package contract

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
)

// The formats the schemas use, as santhosh-tekuri/jsonschema v6 checks
// them (its format.go), rewritten to read bytes without allocating: the
// originals split strings and box them in interfaces, a dozen allocations
// per event. Where the original is lenient (strconv.Atoi takes "+1" as an
// hour) the port is too; FuzzFormats holds each to its original.

// isUUID is validateUUID: five groups of 8, 4, 4, 4 and 12 hex digits
// joined by '-'.
func isUUID(b []byte) bool {
	if len(b) != 36 {
		return false
	}
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isDateTime is validateDateTime: an RFC 3339 date, 't' or 'T', a time.
func isDateTime(b []byte) bool {
	return len(b) >= 20 && (b[10] == 't' || b[10] == 'T') && isDate(b[:10]) && isTime(b[11:])
}

// isDate is time.Parse("2006-01-02", s) succeeding: four digits of year,
// two of month (01 to 12) and two of a day the month has.
func isDate(b []byte) bool {
	if len(b) != 10 || b[4] != '-' || b[7] != '-' {
		return false
	}
	for _, i := range []int{0, 1, 2, 3, 5, 6, 8, 9} {
		if !isDigit(b[i]) {
			return false
		}
	}
	year := int(b[0]-'0')*1000 + int(b[1]-'0')*100 + int(b[2]-'0')*10 + int(b[3]-'0')
	month := int(b[5]-'0')*10 + int(b[6]-'0')
	day := int(b[8]-'0')*10 + int(b[9]-'0')
	if month < 1 || month > 12 || day < 1 {
		return false
	}
	days := [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[month-1]
	if month == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		days = 29
	}
	return day <= days
}

// isTime is validateTime: hh:mm:ss, an optional fraction, then 'z', 'Z'
// or an offset ±hh:mm; a leap second only at 23:59 UTC.
func isTime(b []byte) bool {
	if len(b) < 9 || b[2] != ':' || b[5] != ':' {
		return false
	}
	h, ok1 := atoi2(b[0:2])
	m, ok2 := atoi2(b[3:5])
	s, ok3 := atoi2(b[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || s > 60 {
		return false
	}
	b = b[8:]
	if len(b) > 0 && b[0] == '.' {
		n := digits(b, 1) - 1
		if n == 0 {
			return false
		}
		b = b[1+n:]
	}
	if len(b) != 1 || (b[0] != 'z' && b[0] != 'Z') {
		if len(b) != 6 || b[3] != ':' {
			return false
		}
		var sign int
		switch b[0] {
		case '+':
			sign = -1
		case '-':
			sign = +1
		default:
			return false
		}
		zh, ok1 := atoi2(b[1:3])
		zm, ok2 := atoi2(b[4:6])
		if !ok1 || !ok2 || zh > 23 || zm > 59 {
			return false
		}
		hm := (h*60 + m) + sign*(zh*60+zm)
		if hm < 0 {
			hm += 24 * 60
		}
		h, m = hm/60, hm%60
	}
	return s < 60 || (h == 23 && m == 59)
}

// atoi2 is strconv.Atoi of a two-byte field, which must not be negative:
// "07", and also "+7" and "-0".
func atoi2(b []byte) (int, bool) {
	switch {
	case isDigit(b[0]) && isDigit(b[1]):
		return int(b[0]-'0')*10 + int(b[1]-'0'), true
	case b[0] == '+' && isDigit(b[1]):
		return int(b[1] - '0'), true
	case b[0] == '-' && b[1] == '0':
		return 0, true
	}
	return 0, false
}

// isEmail is validateEmail: at most 254 bytes, a local part of at most 64
// (quoted, or dot-atoms of the allowed characters), '@', and a hostname
// or a bracketed IP address.
func isEmail(b []byte) bool {
	if len(b) > 254 {
		return false
	}
	at := bytes.LastIndexByte(b, '@')
	if at < 0 {
		return false
	}
	local, domain := b[:at], b[at+1:]
	if len(local) > 64 {
		return false
	}
	if len(local) > 1 && local[0] == '"' && local[len(local)-1] == '"' {
		if bytes.ContainsAny(local[1:len(local)-1], `\"`) {
			return false
		}
	} else {
		if bytes.HasPrefix(local, []byte(".")) || bytes.HasSuffix(local, []byte(".")) || bytes.Contains(local, []byte("..")) {
			return false
		}
		for _, c := range local {
			if !isAlnum(c) && strings.IndexByte(".!#$%&'*+-/=?^_`{|}~", c) < 0 {
				return false
			}
		}
	}
	if len(domain) >= 2 && domain[0] == '[' && domain[len(domain)-1] == ']' {
		ip := string(domain[1 : len(domain)-1]) // rare: allocating is fine
		if v6, ok := strings.CutPrefix(ip, "IPv6:"); ok {
			return isIPv6(v6)
		}
		return isIPv4(ip)
	}
	return isHostname(domain)
}

func isAlnum(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// isHostname is validateHostname: at most 253 bytes without a final dot,
// labels of 1 to 63 letters, digits and inner hyphens.
func isHostname(b []byte) bool {
	b = bytes.TrimSuffix(b, []byte("."))
	if len(b) > 253 {
		return false
	}
	for {
		label, rest, more := bytes.Cut(b, []byte("."))
		if len(label) < 1 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !isAlnum(c) && c != '-' {
				return false
			}
		}
		if !more {
			return true
		}
		b = rest
	}
}

// isIPv4 is validateIPV4: four decimals 0 to 255 without leading zeros
// (strconv.Atoi, so "+1" passes).
func isIPv4(s string) bool {
	groups := strings.Split(s, ".")
	if len(groups) != 4 {
		return false
	}
	for _, g := range groups {
		if len(g) > 1 && g[0] == '0' {
			return false
		}
		n, err := strconv.Atoi(g)
		if err != nil || n < 0 || n > 255 {
			return false
		}
	}
	return true
}

// isIPv6 is validateIPV6: an address netip parses, with a colon and no
// zone.
func isIPv6(s string) bool {
	if !strings.Contains(s, ":") {
		return false
	}
	addr, err := netip.ParseAddr(s)
	return err == nil && addr.Zone() == ""
}
