// Package kafkatest gives tests a Kafka to talk to: the cluster named by
// KAFKA_BROKERS when set, otherwise an embedded broker started in-process
// for the test and stopped when it ends.
//
// Tests run both ways: plaintext and open by default, or, with
// KAFKA_TEST_SECURITY=on, the embedded broker authenticates every client
// with SCRAM-SHA-512 over TLS and holds each service's user to its ACLs
// (registry.Service.Access), so a service under test can only write its
// own topics and read what it consumes. Against a real cluster the
// clients authenticate as KAFKA_SASL_MECHANISM, KAFKA_TLS and the rest
// say (kafka.SecurityFromEnv), with the operator's user for all of them.
package kafkatest

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/kafka"
)

// SecurityVar turns the embedded broker's security on for the tests.
const SecurityVar = "KAFKA_TEST_SECURITY"

// Broker is what a test got.
type Broker struct {
	Addrs []string
	// Embedded is nil when the test runs against a real cluster; tests that
	// inject faults skip themselves in that case.
	Embedded *kafka.Embedded
	// Admin is how a test's own clients authenticate: a superuser on a
	// secured broker, the zero Security on an open one.
	Admin kafka.Security
	// Service is how a service under test authenticates. Its User is
	// empty on the embedded broker: the service then uses its own name,
	// the user its ACLs are for.
	Service kafka.Security

	caPEM []byte // the secured embedded broker's certificate
}

// Secured reports whether tests authenticate to the broker.
func (b *Broker) Secured() bool { return b.Admin.Mechanism != "" }

// Opts are the options of a client of the test's: the seed brokers and
// the admin's security.
func (b *Broker) Opts(opts ...kgo.Opt) []kgo.Opt {
	return append(append([]kgo.Opt{kgo.SeedBrokers(b.Addrs...)}, b.Admin.Opts()...), opts...)
}

// Client returns a client of the test's with opts added to Opts, closed
// when t ends.
func (b *Broker) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(b.Opts(opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Start returns a broker with every Orderflow topic created.
func Start(t testing.TB) *Broker {
	t.Helper()
	b := &Broker{}
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		b.Addrs = kafka.ParseBrokers(env)
		e := config.FromEnv()
		b.Admin = kafka.SecurityFromEnv(e, "")
		if err := e.Err(); err != nil {
			t.Fatal(err)
		}
		b.Service = b.Admin
	} else {
		sec, err := embeddedSecurity(t)
		if err != nil {
			t.Fatal(err)
		}
		var opts []kafka.EmbeddedSecurity
		if sec != nil {
			opts = append(opts, sec.broker)
			b.Admin, b.Service, b.caPEM = sec.admin, sec.service, sec.caPEM
		}
		e, err := kafka.StartEmbedded("127.0.0.1:0", "", opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		b.Embedded, b.Addrs = e, e.Addrs()
	}
	if err := kafka.EnsureTopics(context.Background(), b.Addrs, b.Admin, registry.Topics()...); err != nil {
		t.Fatal(err)
	}
	return b
}

// Env is the environment through which a process (orderflowctl, the dev
// stack's services) reaches the broker: KAFKA_BROKERS and, when secured,
// the operator's user and every service's password, and the broker's
// certificate in a file that lives until t ends.
func (b *Broker) Env(t testing.TB) map[string]string {
	t.Helper()
	env := map[string]string{"KAFKA_BROKERS": strings.Join(b.Addrs, ",")}
	if !b.Secured() {
		return env
	}
	env["KAFKA_SASL_MECHANISM"] = b.Admin.Mechanism
	env["KAFKA_SASL_USER"] = b.Admin.User
	env["KAFKA_SASL_PASSWORD"] = b.Admin.Password
	for _, s := range registry.Services {
		env[strings.ToUpper(s.Name)+"_KAFKA_PASSWORD"] = b.Service.Password
	}
	if b.caPEM != nil {
		ca := filepath.Join(t.TempDir(), "kafka-ca.pem")
		if err := os.WriteFile(ca, b.caPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		env["KAFKA_TLS"], env["KAFKA_TLS_CA_FILE"] = "on", ca
	}
	return env
}

// Grant makes a's user, with the services' password, and its ACLs on a
// secured embedded broker, as an operator provisions a service
// (kafka.Provision): for a service under test that the registry does not
// list. It does nothing on an open broker or a real cluster.
func (b *Broker) Grant(t testing.TB, a kafka.Access) {
	t.Helper()
	if !b.Secured() || b.Embedded == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	password := func(string) string { return b.Service.Password }
	if err := kafka.Provision(ctx, kadm.NewClient(b.Client(t)), b.Admin.Mechanism, []kafka.Access{a}, password); err != nil {
		t.Fatal(err)
	}
}

type security struct {
	broker         kafka.EmbeddedSecurity
	admin, service kafka.Security
	caPEM          []byte // the broker's certificate
}

// embeddedSecurity is the secured broker's setup when SecurityVar is on:
// a superuser for the test, a user per registered service held to its
// ACLs, and a certificate made for the run. It is nil when off.
func embeddedSecurity(t testing.TB) (*security, error) {
	switch v := os.Getenv(SecurityVar); v {
	case "", "off":
		return nil, nil
	case "on":
	default:
		t.Fatalf("%s=%q: want on or off", SecurityVar, v)
	}
	password := rand.Text() // one for every service user: it is a test
	server, caPEM, roots, err := kafka.SelfSigned()
	if err != nil {
		return nil, err
	}
	client := server.Clone()
	client.Certificates, client.RootCAs = nil, roots
	s := &security{
		caPEM:   caPEM,
		admin:   kafka.Security{Mechanism: kafka.ScramSHA512, User: "admin", Password: rand.Text(), TLS: client},
		service: kafka.Security{Mechanism: kafka.ScramSHA512, Password: password, TLS: client},
	}
	s.broker = kafka.EmbeddedSecurity{Admin: s.admin, TLS: server, Password: func(string) string { return password }}
	for _, svc := range registry.Services {
		s.broker.Users = append(s.broker.Users, svc.Access(svc.Name))
	}
	return s, nil
}
