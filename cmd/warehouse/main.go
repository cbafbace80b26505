// Command warehouse runs the warehouse service alone (make run runs it
// inside cmd/orderflow with the rest of the system). Configuration comes
// from the environment; see services/warehouse.ConfigFromEnv and docs/design.md.
package main

import (
	"github.com/orderflow/orderflow/pkg/service"
	"github.com/orderflow/orderflow/services/warehouse"
)

func main() { service.Main("warehouse", warehouse.ConfigFromEnv, warehouse.Run) }
