package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"

	"github.com/orderflow/orderflow/pkg/events/rabbit"
	"github.com/orderflow/orderflow/services/email"
)

// rabbitBootstrap makes the email service's RabbitMQ user, as AMQP_URL
// names it, with rights on its own exchanges and queues only
// (rabbit.Topology.Permissions) in AMQP_URL's vhost, created if missing.
// It runs rabbitmqctl (RABBITMQCTL, e.g. "docker compose exec rabbitmq
// rabbitmqctl"), which talks to the broker as its administrator; the
// password never appears on a command line, it goes on rabbitmqctl's
// standard input. Idempotent.
func rabbitBootstrap(ctx context.Context, args []string, out io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("rabbit bootstrap takes no arguments\n%s", usage)
	}
	cfg, err := email.ConfigFromEnv()
	if err != nil {
		return err
	}
	u, err := url.Parse(cfg.AMQPURL)
	if err != nil {
		return fmt.Errorf("AMQP_URL: %w", err)
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	if user == "" || pass == "" || user == "guest" {
		return errors.New("AMQP_URL must name the email service's own user and password (amqp://email:...@host/vhost), not guest")
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	if vhost == "" {
		vhost = "/"
	}
	topo := rabbit.EmailTopology(cfg.RetryDelays).WithPrefix(cfg.QueuePrefix)
	configure, write, read := topo.Permissions()
	ctl := strings.Fields(os.Getenv("RABBITMQCTL"))
	if len(ctl) == 0 {
		ctl = []string{"rabbitmqctl"}
	}
	run := func(stdin string, a ...string) (string, error) {
		cmd := exec.CommandContext(ctx, ctl[0], append(ctl[1:], a...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		return b.String(), err
	}
	if msg, err := run("", "add_vhost", vhost); err != nil && !strings.Contains(msg, "already exists") {
		return fmt.Errorf("rabbitmqctl add_vhost %s: %v: %s", vhost, err, msg)
	}
	if msg, err := run(pass+"\n", "add_user", user); err != nil {
		if !strings.Contains(msg, "already exists") {
			return fmt.Errorf("rabbitmqctl add_user %s: %v: %s", user, err, msg)
		}
		if msg, err := run(pass+"\n", "change_password", user); err != nil {
			return fmt.Errorf("rabbitmqctl change_password %s: %v: %s", user, err, msg)
		}
	}
	if msg, err := run("", "set_permissions", "-p", vhost, user, configure, write, read); err != nil {
		return fmt.Errorf("rabbitmqctl set_permissions %s: %v: %s", user, err, msg)
	}
	fmt.Fprintf(out, "rabbitmq user %s on vhost %s may configure, write and read %s only\n", user, vhost, configure)
	return nil
}
