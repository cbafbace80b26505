package consumer

import (
	"context"
	"sync"
	"sync/atomic"
)

// joiner runs the batches that several partitions have ready at the same
// moment in one transaction: group commit across partitions. Under a
// steady load each partition has a record or two at a time (twelve
// partitions share the rate), so batches of one partition stay small and
// every record would pay a transaction's round trips and commit, and hold
// a pool connection, on its own. Joined, the batches of a moment share one
// transaction and the service holds at most Config.Transactions
// connections for consuming, whatever its partition count.
//
// What holds per partition holds joined: a partition's goroutine waits for
// its batch's outcome before it takes the next, so its records stay in
// offset order; records of other partitions were never ordered against
// them. Every order key of the joint batch is locked in one sorted
// statement, as in a partition's own batch. When the joint transaction
// fails on a record (a RecordError), that record's batch goes on as if it
// had failed alone, and the other batches are handled again on their own;
// any other failure sends every batch of it on its own. So a failing
// record, its retries and its dead letter are its partition's business as
// before, and the other partitions' batches commit without it.
type joiner struct {
	r     *Runner
	slots chan struct{} // one per joint transaction that may run at once
	limit int           // records in one joint transaction, at most (a batch over it runs alone)

	mu     sync.Mutex
	queued []*share
}

// share is one partition's batch waiting in, or run by, a joint
// transaction.
type share struct {
	ctx  context.Context // the partition's work context
	b    batch
	done chan struct{} // closed when the fields below are set

	// The outcome: alone when the joint transaction failed and the batch
	// must be handled on its own; otherwise handleBatch's results.
	alone    bool
	dups     []bool
	failedAt int
	err      error
}

func newJoiner(r *Runner) *joiner {
	return &joiner{r: r, slots: make(chan struct{}, r.cfg.Transactions), limit: 4 * r.cfg.MaxBatch}
}

// handle is handleBatch(ctx, b), run jointly with the batches other
// partitions have queued meanwhile. The caller's goroutine runs joint
// transactions itself while a slot is free, its own batch among them, so
// no goroutine lives beyond the partitions'.
func (j *joiner) handle(ctx context.Context, b batch) (dups []bool, failedAt int, err error) {
	if len(b.work) == 0 {
		return j.r.handleBatch(ctx, b) // nothing for the database
	}
	sh := &share{ctx: ctx, b: b, done: make(chan struct{})}
	j.mu.Lock()
	j.queued = append(j.queued, sh)
	j.mu.Unlock()
	for {
		select {
		case <-sh.done:
			if sh.alone {
				return j.r.handleBatch(ctx, b)
			}
			return sh.dups, sh.failedAt, sh.err
		case j.slots <- struct{}{}:
			ran := j.runQueued()
			<-j.slots
			if !ran {
				// Nothing queued: another goroutine's transaction holds
				// this batch.
				<-sh.done
				if sh.alone {
					return j.r.handleBatch(ctx, b)
				}
				return sh.dups, sh.failedAt, sh.err
			}
		}
	}
}

// runQueued takes the queued batches, oldest first, up to limit records
// (at least one batch), and runs them in one transaction. It reports
// whether there were any.
func (j *joiner) runQueued() bool {
	j.mu.Lock()
	n, records := 0, 0
	for n < len(j.queued) && (n == 0 || records+len(j.queued[n].b.msgs) <= j.limit) {
		records += len(j.queued[n].b.msgs)
		n++
	}
	shares := j.queued[:n:n]
	j.queued = j.queued[n:]
	j.mu.Unlock()
	if n == 0 {
		return false
	}
	if n == 1 {
		sh := shares[0]
		sh.dups, sh.failedAt, sh.err = j.r.handleBatch(sh.ctx, sh.b)
		close(sh.done)
		return true
	}
	var joint batch
	for _, sh := range shares {
		for i := range sh.b.msgs {
			joint.add(sh.b.msgs[i], sh.b.ids[i], sh.b.ignored[i])
		}
	}
	ctx, release := jointContext(shares)
	dups, failedAt, err := j.r.handleBatch(ctx, joint)
	release()
	at := 0
	for _, sh := range shares {
		switch end := at + len(sh.b.msgs); {
		case err == nil:
			sh.dups, sh.failedAt = dups[at:end], -1
		case at <= failedAt && failedAt < end:
			// The batch of the record that failed: as if it had failed
			// in its own batch (the caller commits the records before it
			// and retries it, this attempt counted).
			sh.failedAt, sh.err = failedAt-at, err
		default:
			sh.alone = true
		}
		at += len(sh.b.msgs)
		close(sh.done)
	}
	if err != nil {
		j.r.log.Debug("joint batch failed; each partition's batch goes alone", "batches", n, "records", records, "err", err)
	}
	return true
}

// jointContext is done when every share's context is: a lost partition
// cancels its own handler, not the transaction the others share with it
// (its records committing anyway is harmless, the next owner's inbox sees
// them as duplicates). release must be called when the transaction ends.
func jointContext(shares []*share) (ctx context.Context, release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int32
	left.Store(int32(len(shares)))
	stops := make([]func() bool, len(shares))
	for i, sh := range shares {
		stops[i] = context.AfterFunc(sh.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
