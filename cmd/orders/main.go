// Command orders runs the orders service alone (make run runs it inside
// cmd/orderflow with the rest of the system). Configuration comes from the
// environment; see services/orders.ConfigFromEnv and docs/design.md.
package main

import (
	"github.com/orderflow/orderflow/pkg/service"
	"github.com/orderflow/orderflow/services/orders"
)

func main() { service.Main("orders", orders.ConfigFromEnv, orders.Run) }
