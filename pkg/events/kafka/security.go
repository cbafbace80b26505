package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/orderflow/orderflow/pkg/config"
)

// SASL mechanisms a client may authenticate with.
const (
	ScramSHA512 = "SCRAM-SHA-512"
	ScramSHA256 = "SCRAM-SHA-256"
	Plain       = "PLAIN"
)

// Security is how a client authenticates to the brokers and whether it
// speaks TLS to them. The zero value is plaintext without authentication,
// the dev stack's default.
type Security struct {
	Mechanism string // "" for none, or ScramSHA512, ScramSHA256, Plain
	User      string
	Password  string
	TLS       *tls.Config // nil: plaintext
}

// Opts are the client options that apply s.
func (s Security) Opts() []kgo.Opt {
	var opts []kgo.Opt
	if m := s.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	if s.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(s.TLS.Clone()))
	}
	return opts
}

func (s Security) mechanism() sasl.Mechanism {
	switch s.Mechanism {
	case ScramSHA512:
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism()
	case ScramSHA256:
		return scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism()
	case Plain:
		return plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()
	}
	return nil
}

// LogValue names the mechanism, user and TLS, never the password.
func (s Security) LogValue() slog.Value {
	mech := s.Mechanism
	if mech == "" {
		mech = "none"
	}
	return slog.GroupValue(slog.String("sasl", mech), slog.String("user", s.User), slog.Bool("tls", s.TLS != nil))
}

// SecurityFromEnv reads the brokers' security for the client user (a
// service's name, or "" for an operator's tool):
//
//   - KAFKA_SASL_MECHANISM: none (default), SCRAM-SHA-512, SCRAM-SHA-256 or
//     PLAIN;
//   - the user and password: <USER>_KAFKA_USER (default the user itself)
//     and <USER>_KAFKA_PASSWORD (default KAFKA_SASL_PASSWORD) for a
//     service, KAFKA_SASL_USER and KAFKA_SASL_PASSWORD for a tool;
//   - KAFKA_TLS: off (default) or on; KAFKA_TLS_CA_FILE, a PEM bundle to
//     trust instead of the system's; KAFKA_TLS_SERVER_NAME, the name to
//     verify when it is not the broker address's host.
//
// Problems are collected in e.
func SecurityFromEnv(e *config.Env, user string) Security {
	var s Security
	switch m := strings.ToUpper(e.String("KAFKA_SASL_MECHANISM", "none")); m {
	case "NONE", "":
	case ScramSHA512, ScramSHA256, Plain:
		s.Mechanism = m
	default:
		e.Reject("KAFKA_SASL_MECHANISM", "want none, SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN")
	}
	if s.Mechanism != "" {
		s.User = e.String("KAFKA_SASL_USER", "")
		s.Password = e.String("KAFKA_SASL_PASSWORD", "")
		if user != "" {
			prefix := strings.ToUpper(user)
			s.User = e.String(prefix+"_KAFKA_USER", user) // its own, not the tool's
			s.Password = e.String(prefix+"_KAFKA_PASSWORD", s.Password)
		}
		if s.User == "" || s.Password == "" {
			e.Reject(passwordVar(user), "KAFKA_SASL_MECHANISM is "+s.Mechanism+": the client needs a user and a password")
		}
	}
	if e.OneOf("KAFKA_TLS", "off", "off", "on") == "on" {
		cfg, err := tlsConfig(e.String("KAFKA_TLS_CA_FILE", ""), e.String("KAFKA_TLS_SERVER_NAME", ""))
		if err != nil {
			e.Reject("KAFKA_TLS_CA_FILE", err.Error())
		}
		s.TLS = cfg
	}
	return s
}

// passwordVar is the variable holding user's password.
func passwordVar(user string) string {
	if user == "" {
		return "KAFKA_SASL_PASSWORD"
	}
	return strings.ToUpper(user) + "_KAFKA_PASSWORD"
}

// tlsConfig trusts the PEM bundle at caFile (the system's roots when
// empty) and verifies serverName when set.
func tlsConfig(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}
