package correlation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/slogtest"

	"github.com/orderflow/orderflow/pkg/events/correlation"
)

func TestLogHandler(t *testing.T) {
	withID := correlation.WithID(context.Background(), "cid-1")
	tests := []struct {
		name string
		ctx  context.Context
		log  func(l *slog.Logger, ctx context.Context)
		want map[string]any // expected JSON, without time/level/msg
	}{
		{
			name: "no correlation id",
			ctx:  context.Background(),
			log:  func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "m", "k", "v") },
			want: map[string]any{"service": "orders", "k": "v"},
		},
		{
			name: "correlation id",
			ctx:  withID,
			log:  func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "m", "k", "v") },
			want: map[string]any{"service": "orders", "correlation_id": "cid-1", "k": "v"},
		},
		{
			name: "many attrs",
			ctx:  withID,
			log: func(l *slog.Logger, ctx context.Context) {
				l.InfoContext(ctx, "m", "a", 1, "b", 2, "c", 3, "d", 4, "e", 5, "f", 6)
			},
			want: map[string]any{"service": "orders", "correlation_id": "cid-1",
				"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0, "f": 6.0},
		},
		{
			name: "with attrs",
			ctx:  withID,
			log:  func(l *slog.Logger, ctx context.Context) { l.With("event_id", "e1").InfoContext(ctx, "m") },
			want: map[string]any{"service": "orders", "correlation_id": "cid-1", "event_id": "e1"},
		},
		{
			name: "group stays below top-level keys",
			ctx:  withID,
			log: func(l *slog.Logger, ctx context.Context) {
				l.With("a", 1).WithGroup("g").With("b", 2).WithGroup("h").With("c", 3).InfoContext(ctx, "m", "d", 4)
			},
			want: map[string]any{
				"service": "orders", "correlation_id": "cid-1", "a": 1.0,
				"g": map[string]any{"b": 2.0, "h": map[string]any{"c": 3.0, "d": 4.0}},
			},
		},
		{
			name: "group without id",
			ctx:  context.Background(),
			log:  func(l *slog.Logger, ctx context.Context) { l.WithGroup("g").InfoContext(ctx, "m", "d", 4) },
			want: map[string]any{"service": "orders", "g": map[string]any{"d": 4.0}},
		},
		{
			name: "empty group is omitted",
			ctx:  withID,
			log:  func(l *slog.Logger, ctx context.Context) { l.WithGroup("g").InfoContext(ctx, "m") },
			want: map[string]any{"service": "orders", "correlation_id": "cid-1"},
		},
		{
			name: "inline group attr",
			ctx:  withID,
			log: func(l *slog.Logger, ctx context.Context) {
				l.WithGroup("g").InfoContext(ctx, "m", slog.Group("x", "y", 1))
			},
			want: map[string]any{"service": "orders", "correlation_id": "cid-1",
				"g": map[string]any{"x": map[string]any{"y": 1.0}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(correlation.NewLogHandler(slog.NewJSONHandler(&buf, nil), "orders"))
			tt.log(l, tt.ctx)

			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("output %q: %v", buf.String(), err)
			}
			for _, k := range []string{slog.TimeKey, slog.LevelKey, slog.MessageKey} {
				if _, ok := got[k]; !ok {
					t.Errorf("output lacks %q: %s", k, buf.String())
				}
				delete(got, k)
			}
			if !jsonEqual(got, tt.want) {
				t.Errorf("output %s\nwant attrs %v", buf.String(), tt.want)
			}
			if n := strings.Count(buf.String(), `"correlation_id"`); n > 1 {
				t.Errorf("correlation_id written %d times", n)
			}
		})
	}
}

func jsonEqual(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// TestLogHandlerDoesNotMutateSharedRecord checks that a record handed to
// several handlers keeps its attributes: the id is added to a clone.
func TestLogHandlerDoesNotMutateSharedRecord(t *testing.T) {
	var a, b bytes.Buffer
	h := slog.NewMultiHandler(
		correlation.NewLogHandler(slog.NewJSONHandler(&a, nil), "x"),
		correlation.NewLogHandler(slog.NewJSONHandler(&b, nil), "y"),
	)
	ctx := correlation.WithID(context.Background(), "cid")
	slog.New(h).InfoContext(ctx, "m", "a", 1, "b", 2, "c", 3, "d", 4, "e", 5, "f", 6, "g", 7)
	for _, out := range []string{a.String(), b.String()} {
		if strings.Contains(out, "!BUG") || strings.Count(out, `"correlation_id":"cid"`) != 1 {
			t.Errorf("output %s", out)
		}
	}
}

func TestLogHandlerEnabled(t *testing.T) {
	h := correlation.NewLogHandler(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}), "s")
	if h.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("info enabled at warn level")
	}
	if !h.Enabled(context.Background(), slog.LevelError) {
		t.Error("error disabled at warn level")
	}
}

// TestLogHandlerSlogtest runs the standard library's handler conformance
// suite, which covers WithAttrs/WithGroup semantics.
func TestLogHandlerSlogtest(t *testing.T) {
	var buf bytes.Buffer
	newHandler := func(t *testing.T) slog.Handler {
		buf.Reset()
		return correlation.NewLogHandler(slog.NewJSONHandler(&buf, nil), "svc")
	}
	result := func(t *testing.T) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	slogtest.Run(t, newHandler, result)
}

// TestLogHandlerAllocs checks that the wrapper adds no allocation to what
// the JSON handler itself needs, with and without a correlation id.
func TestLogHandlerAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	plain := slog.New(slog.NewJSONHandler(io.Discard, nil)).With("service", "orders")
	wrapped := slog.New(correlation.NewLogHandler(slog.NewJSONHandler(io.Discard, nil), "orders"))
	ctx := correlation.WithID(context.Background(), "7b0f4a8e-1c1d-4b55-9f6e-2a4f3c5d6e7f")
	base := testing.AllocsPerRun(100, func() { plain.InfoContext(ctx, "order placed", "order_id", "o1", "total", 42) })
	got := testing.AllocsPerRun(100, func() { wrapped.InfoContext(ctx, "order placed", "order_id", "o1", "total", 42) })
	if got > base {
		t.Errorf("wrapped handler: %v allocs per log line, plain JSON handler: %v", got, base)
	}
}

func BenchmarkLogHandler(b *testing.B) {
	ctx := correlation.WithID(context.Background(), "7b0f4a8e-1c1d-4b55-9f6e-2a4f3c5d6e7f")
	loggers := []struct {
		name string
		l    *slog.Logger
	}{
		{"plain", slog.New(slog.NewJSONHandler(io.Discard, nil))},
		{"wrapped", slog.New(correlation.NewLogHandler(slog.NewJSONHandler(io.Discard, nil), "orders"))},
		{"wrapped-group", slog.New(correlation.NewLogHandler(slog.NewJSONHandler(io.Discard, nil), "orders")).WithGroup("g")},
	}
	for _, bl := range loggers {
		b.Run(bl.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bl.l.InfoContext(ctx, "order placed", "order_id", "o1", "total", 42)
			}
		})
	}
}
