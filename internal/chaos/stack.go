package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/orderflow/orderflow/internal/registry"
	"github.com/orderflow/orderflow/pkg/postgres"
	"github.com/orderflow/orderflow/pkg/service"
)

// The chaos stack's names and ports: its own databases, queues, consumer
// groups (on its own broker) and ports, so it runs beside make run without
// touching it.
const (
	databasePrefix = "orderflow_chaos_"
	queuePrefix    = "chaos."
	brokerAddr     = "127.0.0.1:19092"
	controlAddr    = "127.0.0.1:19093"
	firstHTTPPort  = 18080 // orders; payments 18081, ... as in docs/design.md, +10000
	extraHTTPPort  = 18090 // second instances for rebalancing
)

// services are the stack's services in docs/design.md order; their HTTP ports
// follow firstHTTPPort in this order.
var services = registry.Names()

// proc is one process of the stack: a service, a second instance of one,
// or the broker. It can be killed (SIGKILL, as a crash) or stopped
// (SIGTERM, as a deploy) and started again with the same settings.
type proc struct {
	name string
	bin  string
	env  []string
	log  string // file the process's output is appended to

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s already running", p.name)
	}
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a Ctrl-C at the terminal reaches the chaos
	// tool, which stops the stack in order, not every process at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// signal sends sig and waits up to wait for the process to end, then
// kills it; it returns at once when the process is not running.
func (p *proc) signal(sig syscall.Signal, wait time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (p *proc) kill() { p.signal(syscall.SIGKILL, 5*time.Second) }
func (p *proc) stop() { p.signal(syscall.SIGTERM, 20*time.Second) }

// running reports whether the process was started and has not ended.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Process is one process run as the chaos stack runs its own: in its own
// process group (a Ctrl-C reaches only the tool that started it), its
// output appended to a log file, stopped with SIGTERM and killed when it
// has not ended 20 s later. cmd/benchrun runs the system with it.
type Process struct{ p *proc }

// StartProcess starts bin with env added to this process's environment,
// its output appended to the file log.
func StartProcess(name, bin string, env []string, log string) (*Process, error) {
	p := &proc{name: name, bin: bin, env: env, log: log}
	if err := p.start(); err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// Stop sends SIGTERM and waits for the process to end (SIGKILL after 20 s).
func (p *Process) Stop() { p.p.stop() }

// Running reports whether the process has not ended.
func (p *Process) Running() bool { return p.p.running() }

// WaitReady polls base/readyz until it answers 200, for up to timeout.
func WaitReady(ctx context.Context, base string, timeout time.Duration) error {
	return waitReady(ctx, base, timeout)
}

// stack is the system as separate processes.
type stack struct {
	dir      string // binaries, logs and the broker's data
	pgURL    string // the PostgreSQL server
	amqpURL  string
	smtpAddr string
	broker   *proc
	services map[string]*proc
	extras   []*proc // second instances started for a rebalance
}

// buildStack compiles every command the stack runs into dir/bin.
func buildStack(ctx context.Context, dir string) error {
	return BuildCommands(ctx, dir, append([]string{"broker"}, services...)...)
}

// BuildCommands compiles the named commands of ./cmd into dir/bin, one
// binary each named after its command.
func BuildCommands(ctx context.Context, dir string, commands ...string) error {
	bin := filepath.Join(dir, "bin")
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, c := range commands {
		args = append(args, "./cmd/"+c)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

func newStack(dir, pgURL, amqpURL, smtpAddr string, env Settings) *stack {
	s := &stack{dir: dir, pgURL: pgURL, amqpURL: amqpURL, smtpAddr: smtpAddr, services: map[string]*proc{}}
	s.broker = &proc{
		name: "broker", bin: filepath.Join(dir, "bin", "broker"), log: filepath.Join(dir, "broker.log"),
		env: []string{"BROKER_ADDR=" + brokerAddr, "BROKER_DATA_DIR=" + filepath.Join(dir, "kafka"),
			"BROKER_CONTROL_ADDR=" + controlAddr},
	}
	for i, name := range services {
		s.services[name] = s.serviceProc(name, name, firstHTTPPort+i, env)
	}
	return s
}

// serviceProc is a process of service name, listening on port; label
// names its log.
func (s *stack) serviceProc(name, label string, port int, env Settings) *proc {
	vars := []string{
		"POSTGRES_URL=" + s.pgURL,
		"DATABASE_PREFIX=" + databasePrefix,
		// 5 services × (4 + the consumer's 2 + the relay's 2) leaves room on a server with
		// the default max_connections (100) for the checker, a second
		// instance during a rebalance, the backends of a killed process
		// that are still going away, and make test beside it.
		"POSTGRES_MAX_CONNS=4",
		"KAFKA_BROKERS=" + brokerAddr,
		service.AddrVar(name) + "=127.0.0.1:" + strconv.Itoa(port),
		"AMQP_URL=" + s.amqpURL,
		"EMAIL_QUEUE_PREFIX=" + queuePrefix,
		"SMTP_ADDR=" + s.smtpAddr,
		"EMAIL_RETRY_DELAYS=" + env.EmailRetryDelays,
		"WAREHOUSE_SHIP_DELAY=" + env.ShipDelay.String(),
		"LOYALTY_AWARD_DELAY=" + env.AwardDelay.String(),
		"FRAUD_LIMIT_CENTS=" + strconv.FormatInt(env.FraudLimitCents, 10),
		"LOG_FORMAT=json",
	}
	return &proc{name: label, bin: filepath.Join(s.dir, "bin", name), env: vars, log: filepath.Join(s.dir, label+".log")}
}

// url is a service's base URL.
func url(service string) string {
	for i, s := range services {
		if s == service {
			return "http://127.0.0.1:" + strconv.Itoa(firstHTTPPort+i)
		}
	}
	panic("unknown service " + service)
}

// databases maps each service to its database URL.
func (s *stack) databases() (map[string]string, error) {
	dbs := map[string]string{}
	for _, name := range services {
		u, err := postgres.DatabaseURL(s.pgURL, databasePrefix+name)
		if err != nil {
			return nil, err
		}
		dbs[name] = u
	}
	return dbs, nil
}

// start runs the broker, then every service, and waits until each answers
// /readyz.
func (s *stack) start(ctx context.Context) error {
	// Each service runs as its own role, made as the superuser first, as
	// `orderflowctl db bootstrap` makes them.
	for _, name := range services {
		o := postgres.Owner{Database: databasePrefix + name, Role: databasePrefix + name}
		if err := postgres.Bootstrap(ctx, s.pgURL, o); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := s.broker.start(); err != nil {
		return err
	}
	for _, name := range services {
		if err := s.services[name].start(); err != nil {
			return err
		}
	}
	for _, name := range services {
		if err := waitReady(ctx, url(name), 90*time.Second); err != nil {
			return fmt.Errorf("%s: %w (see %s)", name, err, s.services[name].log)
		}
	}
	return nil
}

// stopAll stops every process, services first, so their last offsets and
// cursors are written before the broker goes.
func (s *stack) stopAll() {
	var wg sync.WaitGroup
	for _, p := range append(s.extras, s.procs()...) {
		wg.Go(p.stop)
	}
	wg.Wait()
	s.broker.stop()
}

func (s *stack) procs() []*proc {
	ps := make([]*proc, 0, len(services))
	for _, name := range services {
		ps = append(ps, s.services[name])
	}
	return ps
}

// reset drops the chaos databases and deletes the broker's data, so a run
// starts from nothing; the queues are deleted by the caller (they need an
// AMQP connection).
func (s *stack) reset(ctx context.Context) error {
	for _, name := range services {
		if err := postgres.DropDatabase(ctx, s.pgURL, databasePrefix+name); err != nil {
			return fmt.Errorf("drop %s%s: %w", databasePrefix, name, err)
		}
	}
	return os.RemoveAll(filepath.Join(s.dir, "kafka"))
}

// waitReady polls base/readyz until it answers 200.
func waitReady(ctx context.Context, base string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = ready(ctx, base); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("not ready after %s: %w", timeout, last)
}

// logTail is the last lines of a log file, for error messages.
func logTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

var errNotReady = errors.New("not ready")
