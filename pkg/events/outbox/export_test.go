package outbox

// SetCrashAfterAck makes publishBatch stop after the broker acked a batch
// and before marking it, as if the process died there, whenever fn returns
// true.
func SetCrashAfterAck(fn func() bool) { crashAfterAck = fn }
