package outbox

import (
	"slices"

	"github.com/orderflow/orderflow/pkg/events/outbox/internal/outboxdb"
)

// RecordHeaderKeys returns the keys of the headers the relay writes on a
// Kafka record, in the order it writes them: always, those on every record;
// optional, those it adds only when the outbox row carries a value
// (traceparent). It reads them off records built as the relay builds them,
// so docs/asyncapi.json's test (internal/asyncapi) follows this package
// instead of a copy of its list.
func RecordHeaderKeys() (always, optional []string) {
	bare := record("orderflow/x", &outboxdb.PendingBatchRow{}, false)
	full := record("orderflow/x", &outboxdb.PendingBatchRow{
		Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}, false)
	for _, h := range bare.Headers {
		always = append(always, h.Key)
	}
	for _, h := range full.Headers {
		if !slices.Contains(always, h.Key) {
			optional = append(optional, h.Key)
		}
	}
	return always, optional
}
