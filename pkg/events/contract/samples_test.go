package contract_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/events/contract"
)

// Every event has a sample, and every sample passes its schema.
func TestSamplesAreValid(t *testing.T) {
	for _, topic := range []string{contract.TopicOrders, contract.TopicPayments, contract.TopicWarehouse, contract.TopicLoyalty} {
		for _, name := range contract.EventsOn(topic) {
			ev := contract.Sample(name, "01970000-0000-7000-8000-00000000000a")
			if ev == nil {
				t.Errorf("no sample of %s", name)
				continue
			}
			m := ev.Meta()
			m.Event, m.Version, m.EventID, m.OccurredAt = name, 1, "01970000-0000-7000-8000-00000000000b", time.Now().UTC()
			data, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if err := contract.Validate(name, 1, data); err != nil {
				t.Errorf("sample %s: %v", name, err)
			}
		}
	}
}
