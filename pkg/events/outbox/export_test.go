package outbox

// SetCrashAfterAck makes publishBatch stop after the broker acked a batch
// and before marking it, as if the process died there, whenever fn returns
// true.
func SetCrashAfterAck(fn func() bool) { crashAfterAck = fn }

// Polls returns how many batches o's relay has read so far.
func Polls(o *Outbox) int64 { return o.polls.Load() }
