package postgres

import (
	"context"
	"time"
)

// HousekeepingBatch is how many rows one housekeeping DELETE removes.
// Every such DELETE is a write transaction, and while one runs its
// transaction id holds back the horizon of its database, which that
// database's outbox relay waits behind (package outbox): a batch of
// 1,000 rows commits within milliseconds, 10,000 took tens of them.
const HousekeepingBatch = 1000

// housekeepingPause is the breath between batches, in which relays and
// other writers catch up.
const housekeepingPause = 5 * time.Millisecond

// DeleteInBatches calls del, which deletes at most HousekeepingBatch rows
// in its own short transaction (one autocommitted statement) and says how
// many, until a call deletes fewer, pausing briefly between calls. It
// returns the rows deleted in all.
func DeleteInBatches(ctx context.Context, del func(ctx context.Context, batch int32) (int64, error)) (int64, error) {
	var total int64
	for {
		n, err := del(ctx, HousekeepingBatch)
		total += n
		if err != nil || n < HousekeepingBatch {
			return total, err
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(housekeepingPause):
		}
	}
}
