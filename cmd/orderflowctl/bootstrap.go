package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

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
