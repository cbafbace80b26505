// Package inbox is the processed-events table every consumer keeps in its
// own database, so that handling an event twice changes nothing: Claim
// inserts the event's id inside the transaction that applies its effect,
// and reports whether the event is new.
//
// Guarantees:
//   - Within one database, at most one transaction that claimed an eventId
//     commits as fresh: a concurrent second claim waits on the first one's
//     row and, when that commits, reports a duplicate. If the first rolls
//     back, the second is fresh. The effect and the inbox row commit or roll
//     back together because they share the transaction.
//
// Retention: rows are kept for DefaultRetention (14 days) and then deleted
// by Prune. The window must exceed the longest time after which the same
// event can be delivered again: a record is redelivered while it is still
// in its Kafka topic, or when the producing service's outbox replays it,
// and the outbox keeps published rows for OUTBOX_RETENTION (7 days). An
// eventId pruned earlier than its last possible redelivery would be applied
// a second time, so the inbox keeps twice that, which also covers a topic
// retention of up to 14 days and a consumer stopped for days. Services with
// longer topic retention or outbox retention must raise it accordingly.
//
// Not guaranteed: deduplication across databases or beyond the retention,
// and anything about events that have no eventId (the consumer runner
// dead-letters those before they reach the inbox).
package inbox

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/pkg/events/inbox/internal/inboxdb"
	"github.com/orderflow/orderflow/pkg/postgres"
)

// DefaultRetention is how long a handled eventId is remembered: twice the
// outbox's default OUTBOX_RETENTION of 7 days (see the package doc).
const DefaultRetention = 14 * 24 * time.Hour

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or updates the processed_events table in the pool's
// database. Its version history ("goose_inbox") is kept apart from the
// service's own migrations and the outbox's.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return postgres.Migrate(ctx, pool, sub, "goose_inbox")
}

// Claim records eventID as handled in tx and reports whether it is fresh,
// i.e. not handled before. Apply the event's effect in tx only when fresh;
// otherwise roll back (or commit: nothing was written). topic, partition
// and offset say where the event was read, for people looking at the table.
func Claim(ctx context.Context, tx pgx.Tx, eventID uuid.UUID, topic string, partition int32, offset int64) (fresh bool, err error) {
	n, err := inboxdb.New(tx).Claim(ctx, inboxdb.ClaimParams{
		EventID: eventID, Topic: topic, Partition: partition, Offset: offset,
	})
	if err != nil {
		return false, fmt.Errorf("inbox: claim %s: %w", eventID, err)
	}
	return n == 1, nil
}

// Entry is one event to claim with ClaimAll, and where it was read.
type Entry struct {
	EventID   uuid.UUID
	Topic     string
	Partition int32
	Offset    int64
}

// ClaimAll is Claim for many events in one statement, in tx: fresh[i]
// reports whether entries[i] was new. An eventId that appears twice is
// fresh only the first time.
func ClaimAll(ctx context.Context, tx pgx.Tx, entries []Entry) (fresh []bool, err error) {
	p := inboxdb.ClaimAllParams{
		EventIds:   make([]uuid.UUID, len(entries)),
		Topics:     make([]string, len(entries)),
		Partitions: make([]int32, len(entries)),
		Offsets:    make([]int64, len(entries)),
	}
	for i, e := range entries {
		p.EventIds[i], p.Topics[i], p.Partitions[i], p.Offsets[i] = e.EventID, e.Topic, e.Partition, e.Offset
	}
	ids, err := inboxdb.New(tx).ClaimAll(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("inbox: claim %d events: %w", len(entries), err)
	}
	claimed := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		claimed[id] = true
	}
	fresh = make([]bool, len(entries))
	for i, e := range entries {
		fresh[i] = claimed[e.EventID]
		delete(claimed, e.EventID) // a repeat is not fresh
	}
	return fresh, nil
}

// Prune deletes the rows of events processed before cutoff, in short
// batches (postgres.DeleteInBatches), and returns how many it deleted.
// Callers pass time.Now().Add(-DefaultRetention) or their own longer window.
func Prune(ctx context.Context, db inboxdb.DBTX, cutoff time.Time) (int64, error) {
	q := inboxdb.New(db)
	n, err := postgres.DeleteInBatches(ctx, func(ctx context.Context, batch int32) (int64, error) {
		return q.Prune(ctx, inboxdb.PruneParams{Cutoff: cutoff, BatchSize: batch})
	})
	if err != nil {
		return n, fmt.Errorf("inbox: prune: %w", err)
	}
	return n, nil
}
