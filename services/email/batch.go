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

// batcher turns the requests that arrive together into one call of flush:
// a request waits for the flush of the batch it joined, and requests that
// arrive while one batch flushes form the next. With prefetch 20 that is
// one statement and one commit for many emails instead of one each, and no
// added wait when the worker is idle.
type batcher[Req, Res any] struct {
	max     int
	flush   func(ctx context.Context, reqs []Req) ([]Res, error)
	reqs    chan batchReq[Req, Res]
	stopped chan struct{} // closed when run returned
}

type batchReq[Req, Res any] struct {
	req  Req
	done chan batchRes[Res]
}

type batchRes[Res any] struct {
	res Res
	err error
}

// flushTimeout bounds one flush. Flushes are not cut by shutdown (the
// emails they record went out), so a hung database must not hold the
// service's stop forever.
const flushTimeout = 10 * time.Second

func newBatcher[Req, Res any](max int, flush func(context.Context, []Req) ([]Res, error)) *batcher[Req, Res] {
	return &batcher[Req, Res]{max: max, flush: flush, reqs: make(chan batchReq[Req, Res], max), stopped: make(chan struct{})}
}

var errBatcherStopped = errors.New("batcher stopped")

// run flushes batches until ctx is done. Run it beside the worker, and
// stop it only after the worker stopped: a request made after run returned
// fails with errBatcherStopped.
func (b *batcher[Req, Res]) run(ctx context.Context) {
	defer close(b.stopped)
	for {
		var batch []batchReq[Req, Res]
		select {
		case <-ctx.Done():
			return
		case r := <-b.reqs:
			batch = append(batch, r)
		}
	more:
		for len(batch) < b.max {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		reqs := make([]Req, len(batch))
		for i, r := range batch {
			reqs[i] = r.req
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		res, err := b.flush(fctx, reqs)
		cancel()
		for i, r := range batch {
			out := batchRes[Res]{err: err}
			if err == nil {
				out.res = res[i]
			}
			r.done <- out
		}
	}
}

// do returns once req's batch was flushed. It takes no context: a sent
// record must not be given up because a delivery was cancelled.
func (b *batcher[Req, Res]) do(req Req) (Res, error) {
	done := make(chan batchRes[Res], 1)
	var zero Res
	select {
	case b.reqs <- batchReq[Req, Res]{req: req, done: done}:
	case <-b.stopped:
		return zero, errBatcherStopped
	}
	select {
	case out := <-done:
		return out.res, out.err
	case <-b.stopped:
		return zero, errBatcherStopped
	}
}

// maxBatch bounds one statement.
const maxBatch = 200

// sentRecord is one task the SMTP server accepted.
type sentRecord struct {
	id      uuid.UUID
	attempt int32
}

// newSentRecorder records sent tasks, many per UPDATE.
func newSentRecorder(pool *pgxpool.Pool) *batcher[sentRecord, struct{}] {
	return newBatcher(maxBatch, func(ctx context.Context, recs []sentRecord) ([]struct{}, error) {
		p := emaildb.MarkSentManyParams{TaskIds: make([]uuid.UUID, len(recs)), Attempts: make([]int32, len(recs))}
		for i, r := range recs {
			p.TaskIds[i], p.Attempts[i] = r.id, r.attempt
		}
		if err := emaildb.New(pool).MarkSentMany(ctx, p); err != nil {
			return nil, fmt.Errorf("record %d sent emails: %w", len(recs), err)
		}
		return make([]struct{}, len(recs)), nil
	})
}

// newClaimer claims tasks for sending (see deliverer.claim), many per
// UPDATE; a request's result says whether its task was claimed for it.
// Two copies of one task in one batch: the first gets the claim.
func newClaimer(pool *pgxpool.Pool, stale time.Duration) *batcher[uuid.UUID, bool] {
	return newBatcher(maxBatch, func(ctx context.Context, ids []uuid.UUID) ([]bool, error) {
		claimed, err := emaildb.New(pool).ClaimEmails(ctx, emaildb.ClaimEmailsParams{TaskIds: ids, StaleSeconds: stale.Seconds()})
		if err != nil {
			return nil, fmt.Errorf("claim %d emails: %w", len(ids), err)
		}
		free := make(map[uuid.UUID]bool, len(claimed))
		for _, id := range claimed {
			free[id] = true
		}
		res := make([]bool, len(ids))
		for i, id := range ids {
			res[i] = free[id]
			delete(free, id)
		}
		return res, nil
	})
}
