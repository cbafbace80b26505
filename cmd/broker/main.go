// Command broker runs the embedded Kafka-protocol broker (franz-go's kfake)
// as a process of its own, with every Orderflow topic, persisting to
// BROKER_DATA_DIR, and with BROKER_CONTROL_ADDR an HTTP endpoint to inject
// faults. make chaos runs it so the broker can be killed and restarted like
// a real one; make run embeds it instead. See pkg/events/kafka.
package main

import (
	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/service"
)

func main() {
	service.Main("broker", func() (kafka.StandaloneConfig, error) {
		c, err := kafka.StandaloneConfigFromEnv()
		c.Topics = registry.Topics()
		return c, err
	}, kafka.RunStandalone)
}
