package outbox

// SetCrashAfterAck makes o's relay stop after the broker acked a batch and
// before advancing its cursor, as if the process died there, whenever fn
// returns true. Call it before Run.
func SetCrashAfterAck(o *Outbox, fn func() bool) { o.crashAfterAck = fn }

// Polls returns how many batches o's relay has read so far.
func Polls(o *Outbox) int64 { return o.polls.Load() }
