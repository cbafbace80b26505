package kafka

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is the in-process Kafka-protocol broker (franz-go's kfake): one
// broker speaking the real wire protocol, persisting to a directory when
// one is given. It is for the dev stack and tests, not production.
type Embedded struct {
	cluster *kfake.Cluster
}

// EmbeddedSecurity turns on the broker's authentication and authorization:
// SASL (SCRAM-SHA-512) with Admin as the superuser, one user per Access,
// held to its ACLs (every other request is denied), and TLS with TLS when
// set. The zero value leaves the broker open and plaintext.
type EmbeddedSecurity struct {
	Admin    Security // its Mechanism, User and Password; a superuser
	Users    []Access
	Password func(user string) string // each Access user's password
	TLS      *tls.Config              // the listener's certificate; nil: plaintext
}

func (s EmbeddedSecurity) opts() []kfake.Opt {
	var opts []kfake.Opt
	if s.Admin.Mechanism != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.EnableACLs(),
			kfake.Superuser(s.Admin.Mechanism, s.Admin.User, s.Admin.Password))
		for _, u := range s.Users {
			opts = append(opts, kfake.User(s.Admin.Mechanism, u.User, s.Password(u.User), u.ACLs()...))
		}
	}
	if s.TLS != nil {
		opts = append(opts, kfake.TLS(s.TLS))
	}
	return opts
}

// StartEmbedded starts the broker on addr ("127.0.0.1:9092"; port 0 picks a
// free one). dataDir, when not empty, makes topics, records and committed
// offsets survive a restart. sec, when given, secures it.
func StartEmbedded(addr, dataDir string, sec ...EmbeddedSecurity) (*Embedded, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka port %q: %w", portStr, err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DefaultNumPartitions(Partitions),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, portStr))
		}),
	}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	for _, s := range sec {
		opts = append(opts, s.opts()...)
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka on %s: %w", addr, err)
	}
	return &Embedded{cluster: c}, nil
}

// Addrs returns the broker's listen address, for KAFKA_BROKERS-style use.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Cluster exposes the kfake cluster, for tests that inject faults.
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the broker, saving its state when it persists.
func (e *Embedded) Close() { e.cluster.Close() }
