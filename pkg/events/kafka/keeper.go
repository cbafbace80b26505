package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Keeper makes sure of one service's topics: the ones it consumes, emits
// to and dead-letters to. Run creates those missing (with Partitions
// partitions) as soon as the broker answers and checks again every
// Interval; Ready fails, naming them, while any is missing or has not been
// checked yet. A service that starts before its topics exist, or whose
// dead-letter topic was never created or was deleted, is not ready and
// says why, instead of retrying a record into a topic that is not there.
type Keeper struct {
	brokers  []string
	topics   []string
	interval time.Duration
	log      *slog.Logger
	problem  atomic.Pointer[error] // nil: every topic is there
	opts     []kgo.Opt             // the client's security
}

// DefaultKeeperInterval is how often a Keeper checks its topics again.
const DefaultKeeperInterval = time.Minute

// NewKeeper returns the keeper of topics on brokers, checking them every
// interval (0: DefaultKeeperInterval), its client authenticating with opts
// (Security.Opts).
func NewKeeper(brokers []string, topics []string, interval time.Duration, log *slog.Logger, opts ...kgo.Opt) *Keeper {
	if interval <= 0 {
		interval = DefaultKeeperInterval
	}
	k := &Keeper{brokers: brokers, topics: slices.Compact(slices.Sorted(slices.Values(topics))), interval: interval, log: log, opts: opts}
	k.setProblem(errors.New("not checked yet: " + strings.Join(k.topics, ", ")))
	return k
}

// Topics are the topics the keeper keeps, sorted.
func (k *Keeper) Topics() []string { return slices.Clone(k.topics) }

// Run checks the topics until ctx is done: at once, every second while a
// check fails, then every interval.
func (k *Keeper) Run(ctx context.Context) error {
	if len(k.topics) == 0 {
		k.problem.Store(nil)
		return nil
	}
	cl, err := kgo.NewClient(append(slices.Clone(k.opts), kgo.SeedBrokers(k.brokers...))...)
	if err != nil {
		return fmt.Errorf("topic keeper: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	wait := time.Second
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		created, err := k.ensure(cctx, adm)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		was := k.problem.Load()
		k.setProblem(err)
		switch {
		case err != nil:
			k.log.Warn("kafka topics missing; not ready", "err", err)
		case len(created) > 0:
			k.log.Info("kafka topics created", "topics", created, "partitions", Partitions)
		case was != nil:
			k.log.Info("kafka topics ready", "topics", len(k.topics))
		}
		next := k.interval
		if err != nil {
			next = wait
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next):
		}
	}
}

// ensure creates the missing topics and returns those it created, or an
// error naming those still missing.
func (k *Keeper) ensure(ctx context.Context, adm *kadm.Client) ([]string, error) {
	listed, err := adm.ListTopics(ctx, k.topics...)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var missing []string
	for _, t := range k.topics {
		if d, ok := listed[t]; !ok || d.Err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	resp, err := adm.CreateTopics(ctx, Partitions, -1, nil, missing...)
	if err != nil {
		return nil, fmt.Errorf("topics %s missing; creating them: %w", strings.Join(missing, ", "), err)
	}
	var created, failed []string
	for _, r := range resp.Sorted() {
		switch {
		case r.Err == nil:
			created = append(created, r.Topic)
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
		default:
			failed = append(failed, fmt.Sprintf("%s (%v)", r.Topic, r.Err))
		}
	}
	if len(failed) > 0 {
		return created, fmt.Errorf("topics missing and not created: %s", strings.Join(failed, ", "))
	}
	return created, nil
}

func (k *Keeper) setProblem(err error) {
	if err == nil {
		k.problem.Store(nil)
		return
	}
	k.problem.Store(&err)
}

// Ready reports a missing topic, for /readyz.
func (k *Keeper) Ready(context.Context) error {
	if p := k.problem.Load(); p != nil {
		return *p
	}
	return nil
}
