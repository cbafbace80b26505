// Package correlation carries a correlation id from the request or event
// that started some work to every event, message and log line it causes.
package correlation

import "context"

// Header is the HTTP header (and, lower-cased, the Kafka record header) that
// carries the id.
const Header = "X-Correlation-ID"

type ctxKey struct{}

// WithID returns ctx carrying id.
func WithID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// ID returns the id carried by ctx, or "".
func ID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}
