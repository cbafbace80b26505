package email

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/services/email/internal/emaildb"
)

// sentRecorder records sent tasks in batches: a send waits for the commit
// of the batch its record joined, and records that arrive while one batch
// commits form the next. With prefetch 20 that is one commit for many
// emails instead of one each, and no added wait when the worker is idle.
type sentRecorder struct {
	pool    *pgxpool.Pool
	reqs    chan sentReq
	stopped chan struct{} // closed when run returned
}

type sentReq struct {
	id      uuid.UUID
	attempt int32
	done    chan error
}

// maxSentBatch bounds one UPDATE.
const maxSentBatch = 200

func newSentRecorder(pool *pgxpool.Pool) *sentRecorder {
	return &sentRecorder{pool: pool, reqs: make(chan sentReq, maxSentBatch), stopped: make(chan struct{})}
}

// run commits batches until ctx is done. Run it beside the worker, and
// stop it only after the worker stopped: a record asked for after run
// returned fails (and the message, unacked, comes again).
func (r *sentRecorder) run(ctx context.Context) {
	defer close(r.stopped)
	for {
		var batch []sentReq
		select {
		case <-ctx.Done():
			return
		case req := <-r.reqs:
			batch = append(batch, req)
		}
	more:
		for len(batch) < maxSentBatch {
			select {
			case req := <-r.reqs:
				batch = append(batch, req)
			default:
				break more
			}
		}
		p := emaildb.MarkSentManyParams{TaskIds: make([]uuid.UUID, len(batch)), Attempts: make([]int32, len(batch))}
		for i, req := range batch {
			p.TaskIds[i], p.Attempts[i] = req.id, req.attempt
		}
		// Not cut by shutdown (these emails went out), but bounded, so a
		// hung database cannot hold the service's stop forever.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := emaildb.New(r.pool).MarkSentMany(mctx, p)
		cancel()
		if err != nil {
			err = fmt.Errorf("record %d sent emails: %w", len(batch), err)
		}
		for _, req := range batch {
			req.done <- err
		}
	}
}

var errRecorderStopped = errors.New("sent recorder stopped")

// record returns once id's sent record committed, or with the error. It
// does not give up on ctx: the email went out, and only the record keeps
// it from going again.
func (r *sentRecorder) record(id uuid.UUID, attempt int) error {
	done := make(chan error, 1)
	select {
	case r.reqs <- sentReq{id: id, attempt: int32(attempt), done: done}:
	case <-r.stopped:
		return errRecorderStopped
	}
	select {
	case err := <-done:
		return err
	case <-r.stopped:
		return errRecorderStopped
	}
}
