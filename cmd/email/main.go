// Command email runs the email service alone (make run runs it inside
// cmd/orderflow with the rest of the system). Configuration comes from the
// environment; see services/email.ConfigFromEnv and docs/design.md.
package main

import (
	"github.com/orderflow/orderflow/pkg/service"
	"github.com/orderflow/orderflow/services/email"
)

func main() { service.Main("email", email.ConfigFromEnv, email.Run) }
