package outbox

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/events/correlation"
	"github.com/orderflow/orderflow/pkg/events/outbox/internal/outboxdb"
)

// Step lines. Every event a service emits is a step an order took in that
// service (placed, captured, pick scheduled, shipped, points awarded...),
// and the relay is where it is certain: the transaction committed and the
// broker has the event. So the relay logs one info line per event it
// published to Kafka, with order_id, event_id, correlation_id and, when the
// row carries a trace, trace_id: grepping one correlation id or order id
// across the services' logs tells the order's story. Config.LogSteps (the
// services' LOG_ORDER_STEPS) turns them off: at 1,000 orders/s they are
// some 8,000 lines a second.

// stepMessages phrase the events as steps; others log as "event published".
var stepMessages = map[string]string{
	"OrderPlaced":      "order placed",
	"OrderCancelled":   "order cancelled",
	"PaymentCaptured":  "payment captured",
	"PaymentFailed":    "payment failed",
	"PaymentRefunded":  "payment refunded",
	"StockUnavailable": "stock unavailable",
	"PickScheduled":    "pick scheduled",
	"PickCancelled":    "pick cancelled",
	"OrderShipped":     "order shipped",
	"PointsAwarded":    "points awarded",
}

// logSteps writes the step line of each published row.
func (o *Outbox) logSteps(ctx context.Context, rows []outboxdb.PendingBatchRow) {
	if !o.cfg.LogSteps || o.cfg.Publisher != nil || !o.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	for i := range rows {
		r := &rows[i]
		rctx := ctx
		if r.CorrelationID != "" {
			rctx = correlation.WithID(rctx, r.CorrelationID)
		}
		if sc := correlation.ParseTraceparent(r.Traceparent); sc.IsValid() {
			rctx = trace.ContextWithRemoteSpanContext(rctx, sc)
		}
		msg, ok := stepMessages[r.EventType]
		if !ok {
			msg = "event published"
		}
		o.log.LogAttrs(rctx, slog.LevelInfo, msg,
			slog.String("event", r.EventType), slog.String("order_id", r.Key),
			slog.String("event_id", r.EventID.String()), slog.String("topic", r.Topic))
	}
}
