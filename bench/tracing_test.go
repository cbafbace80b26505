package bench

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/internal/kafkatest"
	"github.com/orderflow/orderflow/internal/pgtest"
	"github.com/orderflow/orderflow/pkg/events/outbox"
	"github.com/orderflow/orderflow/pkg/httpserver"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/services/orders"
)

// BenchmarkTracing: POST /orders at 32 clients with tracing off (no
// OTEL_* set: no hooks at all) and on (every request sampled: an otelhttp
// span, otelpgx spans for its statements, the relay's kotel publish span,
// batched to an exporter that drops them), alternating off, on, off, on on
// one database and relay. Reports each side's best orders/s and the ratio
// on/off: what turning tracing on costs the API.
func BenchmarkTracing(b *testing.B) {
	for range b.N {
		var best [2]float64
		for round := range 4 {
			on := round%2 == 1
			tps := ordersWithTracing(b, on)
			if i := round % 2; tps > best[i] {
				best[i] = tps
			}
		}
		b.ReportMetric(best[0], "off-orders/s")
		b.ReportMetric(best[1], "on-orders/s")
		b.ReportMetric(best[1]/best[0], "on/off")
	}
}

// ordersWithTracing runs loadOrders against a fresh orders API, traced
// when on.
func ordersWithTracing(b *testing.B, on bool) float64 {
	var tp trace.TracerProvider
	if on {
		sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
		defer func() { _ = sdk.Shutdown(context.Background()) }()
		tp = sdk
	}
	ctx := context.Background()
	pool, err := postgres.Connect(ctx, pgtest.NewDatabase(b), clients, postgres.Traced(tp))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if err := orders.Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	broker := kafkatest.Start(b)
	ob := outbox.New(pool, outbox.Config{Service: "orders", Brokers: broker.Addrs, Tracing: tp}, quiet)
	runRelay(b, ob)
	srv := httptest.NewServer(httpserver.Traced(orders.NewServer(pool, ob, prometheus.NewRegistry(), quiet), tp, "orders"))
	defer srv.Close()
	tps, _ := loadOrders(b, srv.URL)
	return tps
}

// discardExporter drops every span: the cost measured is making them.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }
