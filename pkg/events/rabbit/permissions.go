package rabbit

import "regexp"

// Permissions are the configure, write and read patterns a RabbitMQ user
// needs to run t and nothing more: every exchange and queue of t begins
// with its exchange's name ("email", "email.retry", "email.dead",
// "email.send", "email.retry.N", "email.send.dead"), so one pattern covers
// them and no other name. rabbitmqctl set_permissions takes them in this
// order.
func (t Topology) Permissions() (configure, write, read string) {
	p := "^" + regexp.QuoteMeta(t.Exchange) + `(\..+)?$`
	return p, p, p
}
