package chaos

import (
	"github.com/orderflow/orderflow/internal/loadgen"
	"github.com/orderflow/orderflow/internal/smtptest"
)

// Topology is where the chaos stack's parts are, for the checker: every
// service's database on the server, the broker, the email queues and the
// SMTP server the email service sends to.
type Topology struct {
	// Databases maps each service (orders, payments, warehouse, loyalty,
	// email) to its database URL.
	Databases   map[string]string
	Brokers     []string // the chaos broker
	AMQPURL     string
	QueuePrefix string           // EMAIL_QUEUE_PREFIX of the stack's email service
	SMTP        *smtptest.Server // every message the email service sent
	// FraudLimitCents and the loyalty rule (1 point per whole currency
	// unit) decide what an order should end as.
	FraudLimitCents int64
}

// Accepted is one order the API answered 201, with the outcome the load
// generator shaped it for.
type Accepted struct {
	OrderID string
	Outcome loadgen.Outcome
}

// Poison is one record injected on purpose: Value, byte for byte, was
// produced to Topic (Kafka), or published to the email exchange when
// Topic is "" (AMQP). Each must end in a dead-letter destination: every
// consumer group of Topic's dlq.<service>, or email.send.dead.
type Poison struct {
	Topic string
	Value []byte
}

// Expectation is what the checker holds the system to.
type Expectation struct {
	Orders []Accepted
	Poison []Poison
}

// Report is one run of the checker. Violations can never heal (an effect
// done twice, an event out of order, a stranger in a dead-letter queue, an
// accepted order missing); Pending may still converge (an order not yet
// at its end, lag not yet drained). Counts are figures for the table.
type Report struct {
	Violations []string
	Pending    []string
	Counts     map[string]int
}

// Converged reports whether nothing is pending and nothing violated.
func (r Report) Converged() bool { return len(r.Violations) == 0 && len(r.Pending) == 0 }
