package rabbit

// SetCrashAfterHandle installs the test hook run after a successful
// Handler, before the ack.
func (w *Worker) SetCrashAfterHandle(f func(*Delivery) bool) { w.crashAfterHandle = f }
