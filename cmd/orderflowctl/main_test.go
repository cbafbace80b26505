package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-11-27T10:00:00Z": time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
		"2h":                   now.Add(-2 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"1d12h":                now.Add(-36 * time.Hour),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-2h", "2026-11-27"} {
		if _, err := parseTime(in, now); err == nil {
			t.Errorf("parseTime(%q) succeeded", in)
		}
	}
}

// Bad arguments fail before touching any database, naming what is wrong.
func TestRunRejectsBadArguments(t *testing.T) {
	for args, want := range map[string]string{
		"":                         "usage",
		"outbox":                   "usage",
		"lag now":                  "usage",
		"dlq frobnicate":           "usage",
		"dlq show dlq.orders 0-1":  "partition:offset",
		"outbox replay --since 2h": "--service must be one of",
		"outbox replay --service shipping --since 2h":       "--service must be one of",
		"outbox replay --service orders":                    "--since: required",
		"outbox replay --service orders --since soon":       "--since",
		"outbox replay --service orders --since 2h --bogus": "flag provided but not defined",
		"outbox rebase":                    "--service must be one of",
		"outbox rebase --service shipping": "--service must be one of",
	} {
		err := run(context.Background(), strings.Fields(args), &bytes.Buffer{}, time.Now())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("run(%q) = %v; want an error containing %q", args, err, want)
		}
	}
}
