package kafka

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"github.com/twmb/franz-go/plugin/kprom"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderflow/orderflow/pkg/telemetry"
)

// MetricsNamespace prefixes franz-go's client metrics (kprom), e.g.
// orderflow_kafka_produce_records_total{client_id,node_id,topic}.
const MetricsNamespace = "orderflow_kafka"

// Instrumentation is what one Kafka client reports to.
type Instrumentation struct {
	ClientID   string                // client_id label and Kafka client id, e.g. orderflow-payments-consumer
	Registerer prometheus.Registerer // kprom's metrics; nil: none
	Tracing    trace.TracerProvider  // kotel's spans; nil: none
	Group      string                // the consumer group, for consumers' spans
	Security   Security              // how the client authenticates to the brokers
}

// Instrument returns the client options that instrument it, and the kotel
// tracer (nil when tracing is off) a consumer starts its process spans
// with. kprom registers its metrics when the client is created and
// unregisters them when it closes, so each client needs its own id.
func Instrument(in Instrumentation) ([]kgo.Opt, *kotel.Tracer) {
	opts := append([]kgo.Opt{kgo.ClientID(in.ClientID)}, in.Security.Opts()...)
	if in.Registerer != nil {
		m := kprom.NewMetrics(MetricsNamespace, kprom.Registerer(in.Registerer), kprom.WithClientLabel(),
			// Per topic: which service's records a client moves.
			kprom.FetchAndProduceDetail(kprom.ByTopic, kprom.Batches, kprom.Records, kprom.UncompressedBytes, kprom.ConsistentNaming))
		opts = append(opts, kgo.WithHooks(m))
	}
	if in.Tracing == nil {
		return opts, nil
	}
	topts := []kotel.TracerOpt{kotel.TracerProvider(in.Tracing), kotel.TracerPropagator(telemetry.Propagator), kotel.ClientID(in.ClientID)}
	if in.Group != "" {
		topts = append(topts, kotel.ConsumerGroup(in.Group))
	}
	tr := kotel.NewTracer(topts...)
	return append(opts, kgo.WithHooks(kotel.NewKotel(kotel.WithTracer(tr)).Hooks()...)), tr
}
