// Package correlation carries a correlation id from the request or event
// that started some work to every event, message and log line it causes,
// together with the W3C traceparent when the caller sent one.
//
// Guarantees:
//   - Middleware gives every request a correlation id: the caller's
//     X-Correlation-ID when it is sane (see ValidID), a new UUID v4
//     otherwise. The id is in the request context and in the response header
//     before the wrapped handler runs, so it is echoed even on errors.
//   - An incoming traceparent is kept only when it is well formed (see
//     ValidTraceparent); a malformed one is dropped, never repaired.
//   - Loggers built on NewLogHandler write "service" on every line and
//     "correlation_id" on every line logged with a context that carries one
//     (logger.InfoContext(ctx, ...)), both at the top level even inside
//     groups.
//
// Not provided: trace or span creation, sampling, or propagation of
// tracestate; that is OpenTelemetry's job.
package correlation

import (
	"context"
	"encoding/hex"
	"net/http"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
)

// Header is the HTTP header (and, lower-cased, the Kafka record header) that
// carries the id.
const Header = "X-Correlation-ID"

// TraceparentHeader is the W3C Trace Context header (HTTP, Kafka record
// header and AMQP header alike).
const TraceparentHeader = "traceparent"

// MaxIDLen is the longest correlation id accepted from a caller.
const MaxIDLen = 128

type ctxKey struct{}

type traceparentKey struct{}

// Canonical forms, so the middleware looks headers up without
// re-canonicalizing the names on every request.
var (
	canonicalHeader      = http.CanonicalHeaderKey(Header)
	canonicalTraceparent = http.CanonicalHeaderKey(TraceparentHeader)
)

// WithID returns ctx carrying id.
func WithID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// ID returns the id carried by ctx, or "".
func ID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// NewID returns a new correlation id, a random (version 4) UUID string.
func NewID() string {
	return uuid.NewString()
}

// ValidID reports whether id is acceptable as a correlation id from outside:
// 1 to MaxIDLen bytes of printable ASCII without spaces. Anything else (empty,
// oversized, control characters, non-ASCII) could break log lines or headers
// downstream and is replaced by a new id.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// WithTraceparent returns ctx carrying the W3C traceparent tp. Callers
// taking tp from outside should check it with ValidTraceparent first.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, traceparentKey{}, tp)
}

// Traceparent returns the W3C traceparent of ctx: its OpenTelemetry span's
// when it has one (tracing on: what ctx's work causes becomes that span's
// child), else the one WithTraceparent stored (tracing off: passed on
// unchanged), else "".
func Traceparent(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return FormatTraceparent(sc)
	}
	tp, _ := ctx.Value(traceparentKey{}).(string)
	return tp
}

// ParseTraceparent is the span context of a valid traceparent, else an
// invalid one.
func ParseTraceparent(tp string) trace.SpanContext {
	if !ValidTraceparent(tp) {
		return trace.SpanContext{}
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	_, err1 := hex.Decode(tid[:], []byte(tp[3:35]))
	_, err2 := hex.Decode(sid[:], []byte(tp[36:52]))
	_, err3 := hex.Decode(flags[:], []byte(tp[53:55]))
	if err1 != nil || err2 != nil || err3 != nil {
		return trace.SpanContext{}
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags[0]), Remote: true,
	})
}

// FormatTraceparent is sc as a version 00 W3C traceparent.
func FormatTraceparent(sc trace.SpanContext) string {
	tid, sid := sc.TraceID(), sc.SpanID()
	b := make([]byte, 0, 55)
	b = append(b, "00-"...)
	b = hex.AppendEncode(b, tid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, sid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, []byte{byte(sc.TraceFlags())})
	return string(b)
}

// ValidTraceparent reports whether tp is a version 00 W3C traceparent:
// "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>", lower-case hex,
// with neither id all zeros (the spec makes those invalid).
func ValidTraceparent(tp string) bool {
	// 2 + 1 + 32 + 1 + 16 + 1 + 2
	if len(tp) != 55 || tp[0] != '0' || tp[1] != '0' || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return false
	}
	return lowerHex(tp[3:35]) && lowerHex(tp[36:52]) && lowerHex(tp[53:55]) &&
		!allZero(tp[3:35]) && !allZero(tp[36:52])
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// Middleware puts a correlation id into every request's context and echoes
// it in the response's X-Correlation-ID header, set before next runs. It
// keeps the request's own X-Correlation-ID when ValidID accepts it and
// generates one otherwise. A valid incoming traceparent header is stored in
// the context too (see Traceparent); it is not echoed.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := firstHeader(r.Header, canonicalHeader)
		if !ValidID(id) {
			id = NewID()
		}
		ctx := WithID(r.Context(), id)
		if tp := firstHeader(r.Header, canonicalTraceparent); ValidTraceparent(tp) {
			ctx = WithTraceparent(ctx, tp)
		}
		w.Header()[canonicalHeader] = []string{id}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// firstHeader is h.Get(key) for an already canonical key.
func firstHeader(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
