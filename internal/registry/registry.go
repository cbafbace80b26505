// Package registry is the one list of Orderflow's services: each one's
// name, HTTP port, the topics it consumes and those its outbox emits to.
// What has to know every service is derived from it or tested against it:
// the Kafka topics to create (each emitted topic and each consumer's
// dlq.<service>), the services' own Specs, the dev stack, orderflowctl,
// make chaos, sqlc.yaml and the deploy files (compose, kafka-init,
// prometheus.yml). Adding a service starts here (docs/new-service.md).
package registry

import (
	"slices"
	"strconv"

	"github.com/orderflow/orderflow/pkg/events/consumer"
	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// Service is one service of the system.
type Service struct {
	Name     string   // its database, group, dlq topic, ce_source and cmd/<name> are named after it
	Port     int      // its default HTTP port
	Consumes []string // the Kafka topics it consumes; none runs no consumer
	Emits    []string // the Kafka topics its outbox writes to
}

// Services are the services, in the order the dev stack starts and lists
// them.
var Services = []Service{
	{Name: "orders", Port: 8080,
		Consumes: []string{contract.TopicPayments, contract.TopicWarehouse, contract.TopicLoyalty},
		Emits:    []string{contract.TopicOrders}},
	{Name: "payments", Port: 8081,
		Consumes: []string{contract.TopicOrders, contract.TopicWarehouse},
		Emits:    []string{contract.TopicPayments}},
	{Name: "warehouse", Port: 8082,
		Consumes: []string{contract.TopicPayments, contract.TopicOrders},
		Emits:    []string{contract.TopicWarehouse}},
	{Name: "loyalty", Port: 8083,
		Consumes: []string{contract.TopicPayments, contract.TopicOrders},
		Emits:    []string{contract.TopicLoyalty}},
	// email's outbox goes to RabbitMQ, not Kafka.
	{Name: "email", Port: 8084,
		Consumes: []string{contract.TopicOrders, contract.TopicPayments, contract.TopicWarehouse}},
	// orderflowctl new service adds its service above this line.
}

// DLQ is the service's dead-letter topic, "" when it consumes nothing.
func (s Service) DLQ() string {
	if len(s.Consumes) == 0 {
		return ""
	}
	return "dlq." + s.Name
}

// Access is what the service may do on the brokers as user: write its own
// topics and its dead-letter topic, read what it consumes, use its group
// (kafka.Access.ACLs).
func (s Service) Access(user string) kafka.Access {
	a := kafka.Access{User: user, Consumes: s.Consumes, Writes: slices.Clone(s.Emits)}
	if dlq := s.DLQ(); dlq != "" {
		a.Writes = append(a.Writes, dlq)
		a.Group = consumer.GroupName(s.Name)
	}
	return a
}

// Addr is the service's default listen address, ":<port>".
func (s Service) Addr() string { return ":" + strconv.Itoa(s.Port) }

// Get returns the named service; it panics on a name not registered,
// which is a build mistake.
func Get(name string) Service {
	i := slices.IndexFunc(Services, func(s Service) bool { return s.Name == name })
	if i < 0 {
		panic("registry: no service " + name)
	}
	return Services[i]
}

// Names are the services' names, in order.
func Names() []string {
	names := make([]string, len(Services))
	for i, s := range Services {
		names[i] = s.Name
	}
	return names
}

// Topics are every Kafka topic of the system: each one emitted to, then
// each consumer's dead-letter topic, in registry order, without repeats.
func Topics() []string {
	var topics []string
	for _, s := range Services {
		for _, t := range s.Emits {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
	}
	for _, s := range Services {
		if d := s.DLQ(); d != "" {
			topics = append(topics, d)
		}
	}
	return topics
}
