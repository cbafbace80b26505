package correlation

import (
	"context"
	"log/slog"
	"slices"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys written by the handler from NewLogHandler.
const (
	ServiceKey       = "service"
	CorrelationIDKey = "correlation_id"
	TraceIDKey       = "trace_id" // with tracing on (package telemetry)
	SpanIDKey        = "span_id"
)

// NewLogHandler wraps next so that every record gets a top-level "service"
// attribute and, when the record's context carries a correlation id (log
// with logger.InfoContext(ctx, ...) and friends), a top-level
// "correlation_id", and "trace_id" and "span_id" when it carries a span. Both stay at the top level even after WithGroup, so log
// queries find them in one place.
//
// Cost: without open groups the handler adds nothing to what slog allocates
// (service is pre-formatted once; correlation_id goes into the record's
// inline attribute space when it has room). With groups opened by WithGroup
// it rebuilds the record and nests the attributes itself, one allocation
// per record.
func NewLogHandler(next slog.Handler, service string) slog.Handler {
	return &logHandler{top: next.WithAttrs([]slog.Attr{slog.String(ServiceKey, service)})}
}

// logHandler applies groups itself instead of passing them to the wrapped
// handler: once a group is open there, everything the handler writes lands
// inside it, and correlation_id could not be top-level any more.
type logHandler struct {
	// top is the wrapped handler with service and every attribute added
	// before the first group already applied (pre-formatted).
	top slog.Handler
	// groups are the groups opened by WithGroup, outermost first, each with
	// the attributes added while it was the innermost one.
	groups []group
}

type group struct {
	name  string
	attrs []slog.Attr
}

func (h *logHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.top.Enabled(ctx, level)
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	if len(h.groups) == 0 {
		return &logHandler{top: h.top.WithAttrs(attrs)}
	}
	groups := slices.Clone(h.groups)
	last := &groups[len(groups)-1]
	last.attrs = slices.Concat(last.attrs, attrs)
	return &logHandler{top: h.top, groups: groups}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	groups := make([]group, len(h.groups), len(h.groups)+1)
	copy(groups, h.groups)
	return &logHandler{top: h.top, groups: append(groups, group{name: name})}
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	id := ID(ctx)
	sc := trace.SpanContextFromContext(ctx)
	if len(h.groups) == 0 {
		if id != "" || sc.IsValid() {
			// Clone does not allocate; it only keeps AddAttrs from writing
			// into an array shared with the caller's copy of r.
			r = r.Clone()
			addIDs(&r, id, sc)
		}
		return h.top.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	addIDs(&nr, id, sc)
	nr.AddAttrs(h.nest(r))
	return h.top.Handle(ctx, nr)
}

// addIDs adds correlation_id and, with tracing on, trace_id and span_id.
func addIDs(r *slog.Record, id string, sc trace.SpanContext) {
	if id != "" {
		r.AddAttrs(slog.String(CorrelationIDKey, id))
	}
	if sc.IsValid() {
		r.AddAttrs(slog.String(TraceIDKey, sc.TraceID().String()), slog.String(SpanIDKey, sc.SpanID().String()))
	}
}

// nest returns the open groups as one group attribute, the record's own
// attributes in the innermost group, like the wrapped handler's WithGroup
// would have written them. All levels share one backing array.
func (h *logHandler) nest(r slog.Record) slog.Attr {
	n := len(h.groups) - 1 + r.NumAttrs()
	for _, g := range h.groups {
		n += len(g.attrs)
	}
	buf := make([]slog.Attr, n)

	// Fill buf from the end, innermost group first.
	end := len(buf)
	g := h.groups[len(h.groups)-1]
	start := end - len(g.attrs) - r.NumAttrs()
	i := start + copy(buf[start:], g.attrs)
	r.Attrs(func(a slog.Attr) bool {
		buf[i] = a
		i++
		return true
	})
	child := slog.Attr{Key: g.name, Value: slog.GroupValue(buf[start:end]...)}
	for j := len(h.groups) - 2; j >= 0; j-- {
		g := h.groups[j]
		end = start
		start = end - len(g.attrs) - 1
		copy(buf[start:], g.attrs)
		buf[end-1] = child
		child = slog.Attr{Key: g.name, Value: slog.GroupValue(buf[start:end]...)}
	}
	return child
}
