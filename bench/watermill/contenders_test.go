package watermill

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events/contract"
	"github.com/orderflow/orderflow/pkg/events/outbox"
)

// contender is one relay configuration under comparison.
type contender struct {
	name  string // the metric prefix: orderflow, watermill-default, watermill-tuned
	setup func(tb testing.TB, brokers []string) *relay
}

// relay is a contender set up on a fresh database of its own, not yet
// relaying.
type relay struct {
	database string // its database's name
	topic    string // where write's events go
	// write commits one producing transaction with one event keyed
	// orderID, and returns when it committed.
	write func(ctx context.Context, orderID string) (time.Time, error)
	// fill commits n events to topic in one transaction, each keyed by a
	// fresh UUID (a backlog made in SQL: fast, and every row distinct).
	fill func(ctx context.Context, n int, topic string) error
	// run relays until ctx is done.
	run func(ctx context.Context) error
}

var contenders = []contender{
	{"orderflow", orderflowRelay},
	{"watermill-default", func(tb testing.TB, brokers []string) *relay { return watermillRelay(tb, brokers, false) }},
	{"watermill-tuned", func(tb testing.TB, brokers []string) *relay { return watermillRelay(tb, brokers, true) }},
}

// steadyTopics are where the contenders' write paths publish.
var steadyTopics = []string{contract.TopicOrders, watermillTopic}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Producer pools have the size internal/pgtest gives every test pool; each
// relay reads through a pool of its own (Orderflow's makes one of 2).
const producerConns, watermillSubscriberConns = 8, 2

// sampleEvent is the event both contenders carry, as bench/relay_test.go
// writes it.
func sampleEvent(orderID string) *contract.OrderPlaced {
	return &contract.OrderPlaced{
		Envelope:   contract.Envelope{OrderID: orderID},
		CustomerID: "c-42", Email: "ada@example.com",
		Items:      []contract.Item{{SKU: "book-1", Quantity: 2, UnitPriceCents: 1250}},
		TotalCents: 2500, Currency: "EUR", PaymentToken: "tok_visa",
	}
}

// orderflowRelay is Orderflow's outbox at its defaults, written through
// Outbox.Write and woken by Committed as the services do.
func orderflowRelay(tb testing.TB, brokers []string) *relay {
	tb.Helper()
	ctx := context.Background()
	url, db := newDatabase(tb)
	pool := openPool(tb, url, producerConns)
	if err := outbox.Migrate(ctx, pool); err != nil {
		tb.Fatal(err)
	}
	o := outbox.New(pool, outbox.Config{Service: "orders", Brokers: brokers}, quiet)
	write := func(ctx context.Context, orderID string) (time.Time, error) {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return o.Write(ctx, tx, sampleEvent(orderID)) })
		at := time.Now()
		if err == nil {
			o.Committed()
		}
		return at, err
	}
	fill := func(ctx context.Context, n int, topic string) error {
		return fillThenVacuum(ctx, pool, "outbox", func(tx pgx.Tx) error {
			if err := o.Write(ctx, tx, sampleEvent(uuid.NewString())); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE outbox SET topic = $1", topic); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `
				INSERT INTO outbox (event_id, topic, key, event_type, payload, correlation_id, occurred_at)
				SELECT gen_random_uuid(), topic, gen_random_uuid()::text, event_type, payload, correlation_id, occurred_at
				FROM outbox, generate_series(2, $1)`, n)
			return err
		})
	}
	return &relay{database: db, topic: contract.TopicOrders, write: write, fill: fill, run: o.Run}
}

// The Watermill side: producers write through the forwarder's publisher
// wrapping watermill-sql's, in their own transaction; the Forwarder reads
// that table with watermill-sql's subscriber and publishes each message to
// Kafka with watermill-kafka (Sarama's SyncProducer).
const (
	forwarderTopic = "forwarder_topic" // the forwarder's default: table watermill_forwarder_topic
	watermillTopic = "watermill.orders"
	keyMetadata    = "order_id" // the message metadata the Kafka key is taken from
)

// watermillRelay is Watermill's Forwarder at watermill-sql's defaults (poll
// 1 s, resend 1 s, 100 rows a select) or tuned (poll and resend 10 ms, 1,000
// rows a select).
func watermillRelay(tb testing.TB, brokers []string, tuned bool) *relay {
	tb.Helper()
	url, db := newDatabase(tb)
	pool := openPool(tb, url, producerConns)
	logger := watermill.NopLogger{}

	schema := wmsql.DefaultPostgreSQLSchema{}
	subCfg := wmsql.SubscriberConfig{OffsetsAdapter: wmsql.DefaultPostgreSQLOffsetsAdapter{}, InitializeSchema: true}
	if tuned {
		schema.SubscribeBatchSize = 1000
		subCfg.PollInterval = 10 * time.Millisecond
		subCfg.ResendInterval = 10 * time.Millisecond
	}
	subCfg.SchemaAdapter = schema
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromPgx(openPool(tb, url, watermillSubscriberConns)), subCfg, logger)
	if err != nil {
		tb.Fatal(err)
	}
	// The tables must exist before the producers write.
	if err := sub.SubscribeInitialize(forwarderTopic); err != nil {
		tb.Fatal(err)
	}
	kpub, err := wmkafka.NewPublisher(wmkafka.PublisherConfig{
		Brokers: brokers,
		// The orderId as Kafka key, as Orderflow's relay keys its records.
		Marshaler: wmkafka.NewWithPartitioningMarshaler(func(_ string, m *message.Message) (string, error) {
			return m.Metadata.Get(keyMetadata), nil
		}),
		OverwriteSaramaConfig: saramaConfig(),
	}, logger)
	if err != nil {
		tb.Fatal(err)
	}
	fwd, err := forwarder.NewForwarder(sub, kpub, logger, forwarder.Config{ForwarderTopic: forwarderTopic})
	if err != nil {
		tb.Fatal(err)
	}

	publish := func(ctx context.Context, tx pgx.Tx, orderID string) error {
		sqlPub, err := wmsql.NewPublisher(wmsql.TxFromPgx(tx), wmsql.PublisherConfig{SchemaAdapter: schema}, logger)
		if err != nil {
			return err
		}
		payload, err := eventJSON(orderID)
		if err != nil {
			return err
		}
		msg := message.NewMessage(watermill.NewUUID(), payload)
		msg.Metadata.Set(keyMetadata, orderID)
		msg.SetContext(ctx)
		return forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: forwarderTopic}).Publish(watermillTopic, msg)
	}
	write := func(ctx context.Context, orderID string) (time.Time, error) {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return publish(ctx, tx, orderID) })
		return time.Now(), err
	}
	fill := func(ctx context.Context, n int, topic string) error {
		return fillThenVacuum(ctx, pool, "watermill_forwarder_topic", func(tx pgx.Tx) error {
			if err := publish(ctx, tx, uuid.NewString()); err != nil {
				return err
			}
			// The envelope (payload) names the destination topic, the
			// message's own uuid and its metadata, the key among them.
			_, err := tx.Exec(ctx, `UPDATE watermill_forwarder_topic
				SET payload = jsonb_set(payload::jsonb, '{destination_topic}', to_jsonb($1::text))::json`, topic)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `
				INSERT INTO watermill_forwarder_topic (uuid, payload, metadata, transaction_id)
				SELECT gen_random_uuid()::text,
					jsonb_set(jsonb_set(payload::jsonb, '{uuid}', to_jsonb(gen_random_uuid()::text)),
						'{metadata,`+keyMetadata+`}', to_jsonb(gen_random_uuid()::text))::json,
					metadata, pg_current_xact_id()
				FROM watermill_forwarder_topic, generate_series(2, $1)`, n)
			return err
		})
	}
	run := func(ctx context.Context) error {
		err := fwd.Run(ctx)
		if cerr := fwd.Close(); err == nil {
			err = cerr
		}
		if cerr := kpub.Close(); err == nil {
			err = cerr
		}
		return err
	}
	return &relay{database: db, topic: watermillTopic, write: write, fill: fill, run: run}
}

// saramaConfig is watermill-kafka's default sync publisher config. Its
// protocol version, Kafka 1.0, is one the embedded broker (kfake) speaks.
func saramaConfig() *sarama.Config {
	return wmkafka.DefaultSaramaSyncPublisherConfig()
}

// eventJSON is the event as Orderflow's outbox would store it: envelope
// filled in, marshalled (but not schema-checked: Watermill has no schemas).
func eventJSON(orderID string) ([]byte, error) {
	e := sampleEvent(orderID)
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	e.Event, e.Version, e.EventID, e.OccurredAt = e.Name(), 1, id.String(), time.Now().UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("marshal event: %w", err)
	}
	return b, nil
}

// fillThenVacuum commits fill and then vacuums and analyzes table, so the
// relay's first select meets a planned, visible table, as it would after
// the backlog grew over time.
func fillThenVacuum(ctx context.Context, pool *pgxpool.Pool, table string, fill func(pgx.Tx) error) error {
	if err := pgx.BeginFunc(ctx, pool, fill); err != nil {
		return err
	}
	_, err := pool.Exec(ctx, "VACUUM ANALYZE "+table)
	return err
}
