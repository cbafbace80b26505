package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// committer commits the offsets the partition goroutines finished, for
// all of them in one OffsetCommit request at a time. franz-go runs one
// commit at a time (CommitOffsetsSync waits for the one in flight), so a
// synchronous commit per partition after each batch queued every
// partition behind the others' round trips: with 36 partitions a
// service's goroutines spent most of their time waiting to commit, not
// handling. Here a partition hands its last finished record over and goes
// on; the committer sends what has gathered meanwhile, so commits shrink
// to one request per round trip whatever the partition count.
//
// What holds: an offset is still committed only after its record's
// transaction committed (a partition offers its record after that), per
// partition only forward (one commit at a time, commitMu, each with the
// latest record offered), and never for a lost partition or after the
// test hook's crash. Revoked partitions and a stopping runner flush before
// going on, so what they finished is committed before another member
// takes over.
type committer struct {
	s    *session
	kick chan struct{} // capacity 1: something is pending

	commitMu sync.Mutex // held across taking pending and committing it

	mu      sync.Mutex
	pending map[topicPartition]offered
}

// offered is a partition's last finished record, waiting to be committed.
type offered struct {
	pc  *partition
	rec *kgo.Record
}

// commitRetry is how long the committer waits after a failed commit
// before it tries again with what is pending then.
const commitRetry = 200 * time.Millisecond

func newCommitter(s *session) *committer {
	return &committer{s: s, kick: make(chan struct{}, 1), pending: make(map[topicPartition]offered)}
}

// offer hands pc's last finished record to the committer, without
// waiting for the commit.
func (c *committer) offer(pc *partition) {
	if pc.last == nil || pc.work.Err() != nil || c.s.crashed.Load() {
		return
	}
	c.mu.Lock()
	c.pending[pc.tp] = offered{pc: pc, rec: pc.last}
	c.mu.Unlock()
	pc.last = nil
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// run commits what is offered until ctx is done.
func (c *committer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		if !c.commit() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(commitRetry):
			}
			select {
			case c.kick <- struct{}{}: // try again with what is pending then
			default:
			}
		}
	}
}

// flush commits what is pending now and returns when that is done.
func (c *committer) flush() { c.commit() }

// commit commits every pending offset in one request. A failure is
// logged and the offsets stay pending unless a newer one came meanwhile;
// it reports whether the commit succeeded (or had nothing to do).
func (c *committer) commit() bool {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.mu.Lock()
	batch := c.pending
	c.pending = make(map[topicPartition]offered, len(batch))
	c.mu.Unlock()
	recs := make([]*kgo.Record, 0, len(batch))
	for tp, o := range batch {
		if o.pc.work.Err() != nil || c.s.crashed.Load() {
			delete(batch, tp) // lost (another member may own it) or crashed on purpose
			continue
		}
		recs = append(recs, o.rec)
	}
	if len(recs) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.s.cl.CommitRecords(ctx, recs...); err != nil {
		c.s.r.log.Warn("commit offsets", "partitions", len(recs), "err", err)
		c.mu.Lock()
		for tp, o := range batch {
			if _, newer := c.pending[tp]; !newer {
				c.pending[tp] = o
			}
		}
		c.mu.Unlock()
		return false
	}
	return true
}
