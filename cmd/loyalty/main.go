// Command loyalty runs the loyalty service alone (make run runs it inside
// cmd/orderflow with the rest of the system). Configuration comes from the
// environment; see services/loyalty.ConfigFromEnv and docs/design.md.
package main

import (
	"github.com/orderflow/orderflow/pkg/service"
	"github.com/orderflow/orderflow/services/loyalty"
)

func main() { service.Main("loyalty", loyalty.ConfigFromEnv, loyalty.Run) }
