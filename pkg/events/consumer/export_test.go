package consumer

// SetAfterCommit makes r stop as if its process died after a record's
// transaction committed and before its offset was committed, whenever fn
// returns true for the record. Run then returns a non-nil error. Call it
// before Run.
func SetAfterCommit(r *Runner, fn func(Message) bool) { r.afterCommit = fn }
