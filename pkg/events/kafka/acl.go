package kafka

import (
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Access is what one service may do on the brokers.
type Access struct {
	User     string   // its SASL user
	Group    string   // its consumer group; "" for none
	Consumes []string // topics it reads
	Writes   []string // topics it writes: those it emits and its dead-letter topic
}

// ACLs are the allow rules that grant a exactly: WRITE and CREATE on the
// topics it writes (its Keeper creates them when missing), READ on those
// it consumes and on its group. Kafka implies DESCRIBE from READ and
// WRITE; nothing else is allowed, so it cannot write another service's
// topic, read a topic it does not consume, or join another's group.
func (a Access) ACLs() []kfake.ACL {
	var acls []kfake.ACL
	allow := func(res kmsg.ACLResourceType, name string, op kmsg.ACLOperation) {
		acls = append(acls, kfake.ACL{Resource: res, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true})
	}
	for _, t := range a.Writes {
		allow(kmsg.ACLResourceTypeTopic, t, kmsg.ACLOperationWrite)
		allow(kmsg.ACLResourceTypeTopic, t, kmsg.ACLOperationCreate)
	}
	for _, t := range a.Consumes {
		allow(kmsg.ACLResourceTypeTopic, t, kmsg.ACLOperationRead)
	}
	if a.Group != "" {
		allow(kmsg.ACLResourceTypeGroup, a.Group, kmsg.ACLOperationRead)
	}
	return acls
}
