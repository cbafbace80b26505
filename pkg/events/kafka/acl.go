package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
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

// Provision makes each access's SCRAM user (mechanism ScramSHA512 or
// ScramSHA256) with its password and creates its ACLs on a real cluster,
// through adm, whose client must be a superuser's (or hold ALTER on the
// cluster). Upserting a user and creating an ACL that exists change
// nothing, so it may run after every upgrade.
func Provision(ctx context.Context, adm *kadm.Client, mechanism string, accesses []Access, password func(user string) string) error {
	mech := kadm.ScramSha512
	if mechanism == ScramSHA256 {
		mech = kadm.ScramSha256
	}
	var users []kadm.UpsertSCRAM
	for _, a := range accesses {
		// 4096 iterations, Kafka's minimum and kafka-configs' default (the
		// embedded broker checks with 4096 whatever was stored).
		users = append(users, kadm.UpsertSCRAM{User: a.User, Mechanism: mech, Iterations: 4096, Password: password(a.User)})
	}
	altered, err := adm.AlterUserSCRAMs(ctx, nil, users)
	if err == nil {
		err = altered.Error()
	}
	if err != nil {
		return fmt.Errorf("kafka users: %w", err)
	}
	for _, a := range accesses {
		for _, acl := range a.ACLs() {
			b := kadm.NewACLs().Allow("User:" + a.User).AllowHosts("*").
				Operations(acl.Operation).ResourcePatternType(kadm.ACLPatternLiteral)
			if acl.Resource == kmsg.ACLResourceTypeGroup {
				b = b.Groups(acl.Name)
			} else {
				b = b.Topics(acl.Name)
			}
			results, err := adm.CreateACLs(ctx, b)
			if err != nil {
				return fmt.Errorf("kafka ACLs of %s: %w", a.User, err)
			}
			for _, r := range results {
				if r.Err != nil {
					return fmt.Errorf("kafka ACL %s %v on %s for %s: %w", r.Operation, r.Type, r.Name, a.User, r.Err)
				}
			}
		}
	}
	return nil
}
