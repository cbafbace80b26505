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
// arrive while one batch flushes form the next. With the default prefetch
// (100) that is one statement and one commit for some 24 claims and sent
// records (BenchmarkEmailThroughput) instead of one each, and no added wait
// when the worker is idle.
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

// entry is one request of a delivery to the ledger: claim its task for
// sending, or record it sent.
type entry struct {
	id      uuid.UUID
	sent    bool  // record it sent on attempt; else claim it
	attempt int32 // when sent
}

// newLedger claims tasks for sending (see deliverer.claim) and records
// sent ones, both kinds of a batch in one statement and one commit
// (ClaimAndMarkSent): the claims of the deliveries that just came share a
// commit with the sent records of those that just went out, one commit per
// batch instead of one per batch of each kind. A claim's result says
// whether its task was claimed for it (a sent record's is always false).
// Two copies of one task in one batch: the first gets the claim.
func newLedger(pool *pgxpool.Pool, stale time.Duration) *batcher[entry, bool] {
	return newBatcher(maxBatch, func(ctx context.Context, es []entry) ([]bool, error) {
		p := emaildb.ClaimAndMarkSentParams{StaleSeconds: stale.Seconds(), SentIds: []uuid.UUID{}, Attempts: []int32{}, ClaimIds: []uuid.UUID{}}
		for _, e := range es {
			if e.sent {
				p.SentIds, p.Attempts = append(p.SentIds, e.id), append(p.Attempts, e.attempt)
			} else {
				p.ClaimIds = append(p.ClaimIds, e.id)
			}
		}
		claimed, err := emaildb.New(pool).ClaimAndMarkSent(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("claim %d emails and record %d sent: %w", len(p.ClaimIds), len(p.SentIds), err)
		}
		free := make(map[uuid.UUID]bool, len(claimed))
		for _, id := range claimed {
			free[id] = true
		}
		res := make([]bool, len(es))
		for i, e := range es {
			if !e.sent {
				res[i] = free[e.id]
				delete(free, e.id)
			}
		}
		return res, nil
	})
}
