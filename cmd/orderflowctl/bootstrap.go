package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/kafka"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

// dbBootstrap makes every service's database and the role that owns it
// (postgres.Bootstrap), as POSTGRES_ADMIN_URL's superuser; the services
// then connect as their roles. Idempotent: run it after every upgrade.
func dbBootstrap(ctx context.Context, args []string, out io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("db bootstrap takes no arguments\n%s", usage)
	}
	env := config.FromEnv()
	admin := service.AdminURL(env)
	if err := env.Err(); err != nil {
		return err
	}
	for _, name := range services {
		o := postgres.Owner{Database: databaseName(name), Password: os.Getenv(service.PasswordVar(name))}
		o.Role = o.Database
		if err := postgres.Bootstrap(ctx, admin, o); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		password := "no password (a trust server)"
		if o.Password != "" {
			password = "password from " + service.PasswordVar(name)
		}
		fmt.Fprintf(out, "%-10s database %s owned by role %s, %s\n", name, o.Database, o.Role, password)
	}
	fmt.Fprintf(out, "done: each role owns its database and nothing else; the services connect as them (%s)\n",
		strings.Join(services, ", "))
	return nil
}

// newKafkaClient is a client of brokers authenticated as the operator's
// tool: KAFKA_SASL_MECHANISM, KAFKA_SASL_USER and KAFKA_SASL_PASSWORD,
// KAFKA_TLS (kafka.SecurityFromEnv), the variables the services read.
func newKafkaClient(brokers []string, opts ...kgo.Opt) (*kgo.Client, error) {
	env := config.FromEnv()
	sec := kafka.SecurityFromEnv(env, "")
	if err := env.Err(); err != nil {
		return nil, err
	}
	return kgo.NewClient(append(append(sec.Opts(), kgo.SeedBrokers(brokers...)), opts...)...)
}

// kafkaBootstrap makes, on a real cluster, every topic, each service's
// SCRAM user with its password (<SERVICE>_KAFKA_PASSWORD, user
// <SERVICE>_KAFKA_USER or its name) and the ACLs that hold it to its own
// topics, its dead-letter topic and its group (kafka.Provision), as
// KAFKA_SASL_USER, a superuser. Idempotent.
func kafkaBootstrap(ctx context.Context, args []string, out io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("kafka bootstrap takes no arguments\n%s", usage)
	}
	env := config.FromEnv()
	brokers := kafka.ParseBrokers(env.String("KAFKA_BROKERS", service.DefaultBroker))
	admin := kafka.SecurityFromEnv(env, "")
	var accesses []kafka.Access
	passwords := map[string]string{}
	for _, s := range registry.Services {
		sec := kafka.SecurityFromEnv(env, s.Name)
		accesses = append(accesses, s.Access(sec.User))
		passwords[sec.User] = sec.Password
	}
	if err := env.Err(); err != nil {
		return err
	}
	if admin.Mechanism != kafka.ScramSHA512 && admin.Mechanism != kafka.ScramSHA256 {
		return errors.New("kafka bootstrap makes SCRAM users: set KAFKA_SASL_MECHANISM to SCRAM-SHA-512 or SCRAM-SHA-256, and KAFKA_SASL_USER/_PASSWORD to a superuser's")
	}
	if err := kafka.EnsureTopics(ctx, brokers, admin, registry.Topics()...); err != nil {
		return err
	}
	cl, err := newKafkaClient(brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := kafka.Provision(ctx, kadm.NewClient(cl), admin.Mechanism, accesses, func(u string) string { return passwords[u] }); err != nil {
		return err
	}
	for _, a := range accesses {
		fmt.Fprintf(out, "%-10s writes %s; reads %s; group %s\n", a.User, strings.Join(a.Writes, ","), strings.Join(a.Consumes, ","), a.Group)
	}
	return nil
}
