// Package clock holds the one timing helper the event packages share.
package clock

import (
	"context"
	"time"
)

// Sleep waits d or until ctx is done, reporting whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
