// Command payments runs the payments service alone (make run runs it inside
// cmd/orderflow with the rest of the system). Configuration comes from the
// environment; see services/payments.ConfigFromEnv and docs/design.md.
package main

import (
	"github.com/orderflow/orderflow/pkg/service"
	"github.com/orderflow/orderflow/services/payments"
)

func main() { service.Main("payments", payments.ConfigFromEnv, payments.Run) }
