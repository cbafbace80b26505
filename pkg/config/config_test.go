package config_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/pkg/config"
	"github.com/orderflow/orderflow/pkg/events/correlation"
)

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		read    func(e *config.Env) any
		want    any
		wantErr string
	}{
		{"string default", nil, func(e *config.Env) any { return e.String("S", "def") }, "def", ""},
		{"string empty is default", map[string]string{"S": ""}, func(e *config.Env) any { return e.String("S", "def") }, "def", ""},
		{"string set", map[string]string{"S": "x y"}, func(e *config.Env) any { return e.String("S", "def") }, "x y", ""},

		{"duration default", nil, func(e *config.Env) any { return e.Duration("D", 2*time.Second) }, 2 * time.Second, ""},
		{"duration set", map[string]string{"D": "1h30m"}, func(e *config.Env) any { return e.Duration("D", 2*time.Second) }, 90 * time.Minute, ""},
		{"duration zero", map[string]string{"D": "0"}, func(e *config.Env) any { return e.Duration("D", 2*time.Second) }, time.Duration(0), ""},
		{"duration garbage", map[string]string{"D": "abc"}, func(e *config.Env) any { return e.Duration("D", 2*time.Second) },
			2 * time.Second, `config: D: "abc" is not a duration (e.g. 2s, 10m, 7d)`},
		{"duration without unit", map[string]string{"D": "5"}, func(e *config.Env) any { return e.Duration("D", 2*time.Second) },
			2 * time.Second, `config: D: "5" is not a duration (e.g. 2s, 10m, 7d)`},
		{"duration negative", map[string]string{"D": "-1s"}, func(e *config.Env) any { return e.Duration("D", 2*time.Second) },
			2 * time.Second, `config: D: "-1s" is negative`},

		{"int64 default", nil, func(e *config.Env) any { return e.Int64("N", 1_000_000) }, int64(1_000_000), ""},
		{"int64 set", map[string]string{"N": "-42"}, func(e *config.Env) any { return e.Int64("N", 1) }, int64(-42), ""},
		{"int64 garbage", map[string]string{"N": "1e6"}, func(e *config.Env) any { return e.Int64("N", 1) },
			int64(1), `config: N: "1e6" is not an integer`},
		{"int64 spaces", map[string]string{"N": " 5"}, func(e *config.Env) any { return e.Int64("N", 1) },
			int64(1), `config: N: " 5" is not an integer`},
		{"int64 overflow", map[string]string{"N": "99999999999999999999"}, func(e *config.Env) any { return e.Int64("N", 1) },
			int64(1), `config: N: "99999999999999999999" is out of range for a 64-bit integer`},
		{"int set", map[string]string{"N": "5"}, func(e *config.Env) any { return e.Int("N", 1) }, 5, ""},

		{"level default", nil, func(e *config.Env) any { return e.LogLevel("L", "info") }, slog.LevelInfo, ""},
		{"level set", map[string]string{"L": "DEBUG"}, func(e *config.Env) any { return e.LogLevel("L", "info") }, slog.LevelDebug, ""},
		{"level offset", map[string]string{"L": "warn+1"}, func(e *config.Env) any { return e.LogLevel("L", "info") }, slog.LevelWarn + 1, ""},
		{"level garbage", map[string]string{"L": "verbose"}, func(e *config.Env) any { return e.LogLevel("L", "info") },
			slog.LevelInfo, `config: L: "verbose" is not a log level (debug, info, warn, error)`},

		{"one of default", nil, func(e *config.Env) any { return e.OneOf("F", "json", "json", "text") }, "json", ""},
		{"one of set", map[string]string{"F": "TEXT"}, func(e *config.Env) any { return e.OneOf("F", "json", "json", "text") }, "text", ""},
		{"one of garbage", map[string]string{"F": "xml"}, func(e *config.Env) any { return e.OneOf("F", "json", "json", "text") },
			"json", `config: F: "xml" is not one of json, text`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := config.FromLookup(lookup(tt.env))
			if got := tt.read(e); got != tt.want {
				t.Errorf("got %v (%T), want %v (%T)", got, got, tt.want, tt.want)
			}
			err := e.Err()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Err() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("Err() = %v, want %s", err, tt.wantErr)
			}
		})
	}
}

func TestErrCollectsAllOnOneLine(t *testing.T) {
	e := config.FromLookup(lookup(map[string]string{
		"WAREHOUSE_SHIP_DELAY": "abc",
		"FRAUD_LIMIT_CENTS":    "lots",
		"POSTGRES_URL":         "postgres://x",
		"EMAIL_MAX_ATTEMPTS":   "0",
	}))
	e.Duration("WAREHOUSE_SHIP_DELAY", 2*time.Second)
	e.Int64("FRAUD_LIMIT_CENTS", 1_000_000)
	e.String("POSTGRES_URL", "")
	if n := e.Int("EMAIL_MAX_ATTEMPTS", 5); n < 1 {
		e.Reject("EMAIL_MAX_ATTEMPTS", "must be at least 1")
	}
	err := e.Err()
	want := `config: WAREHOUSE_SHIP_DELAY: "abc" is not a duration (e.g. 2s, 10m, 7d); ` +
		`FRAUD_LIMIT_CENTS: "lots" is not an integer; EMAIL_MAX_ATTEMPTS: "0" must be at least 1`
	if err == nil || err.Error() != want {
		t.Fatalf("Err() = %v\nwant %s", err, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Error("message spans lines")
	}
	var ve *config.VarError
	if !errors.As(err, &ve) || ve.Name != "WAREHOUSE_SHIP_DELAY" || ve.Value != "abc" {
		t.Errorf("errors.As = %+v", ve)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("ORDERFLOW_TEST_DELAY", "3s")
	e := config.FromEnv()
	if got := e.Duration("ORDERFLOW_TEST_DELAY", time.Second); got != 3*time.Second {
		t.Errorf("Duration = %v", got)
	}
	if err := e.Err(); err != nil {
		t.Error(err)
	}
}

func TestBadDefaultPanics(t *testing.T) {
	for name, f := range map[string]func(e *config.Env){
		"LogLevel": func(e *config.Env) { e.LogLevel("L", "loud") },
		"OneOf":    func(e *config.Env) { e.OneOf("F", "xml", "json", "text") },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f(config.FromLookup(lookup(nil)))
		})
	}
}

func TestNewLogger(t *testing.T) {
	ctx := correlation.WithID(context.Background(), "cid-9")
	t.Run("json", func(t *testing.T) {
		var buf bytes.Buffer
		l := config.NewLogger(&buf, "payments", slog.LevelInfo, config.FormatJSON)
		l.DebugContext(ctx, "hidden")
		l.InfoContext(ctx, "shown", "k", "v")
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("%q: %v", buf.String(), err)
		}
		if m["service"] != "payments" || m["correlation_id"] != "cid-9" || m["msg"] != "shown" || m["k"] != "v" {
			t.Errorf("line %s", buf.String())
		}
	})
	t.Run("text", func(t *testing.T) {
		var buf bytes.Buffer
		l := config.NewLogger(&buf, "payments", slog.LevelDebug, config.FormatText)
		l.DebugContext(ctx, "shown")
		out := buf.String()
		for _, s := range []string{"level=DEBUG", "msg=shown", "service=payments", "correlation_id=cid-9"} {
			if !strings.Contains(out, s) {
				t.Errorf("line %q lacks %q", out, s)
			}
		}
	})
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"7d": "168h0m0s", "1d12h": "36h0m0s", "36h": "36h0m0s", "0d": "0s", "90m": "1h30m0s"} {
		got, err := config.ParseDuration(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "7", "-1d", "1.5d", "7days", "1d-2h", "x"} {
		if _, err := config.ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", in)
		}
	}
}

// A rejected variable's error never shows a secret: a password, secret,
// token or key is hidden whole, a URL's password masked.
func TestErrHidesSecrets(t *testing.T) {
	env := map[string]string{
		"PAYMENTS_POSTGRES_PASSWORD": "hunter2-pg",
		"HTTP_API_KEYS":              "hunter2-key",
		"KAFKA_SASL_PASSWORD":        "hunter2-kafka",
		"POSTGRES_ADMIN_URL":         "postgres://postgres:hunter2-url@db:5432/postgres",
		"AMQP_URL":                   "amqp://email:hunter2-amqp@mq:5672/",
	}
	e := config.FromLookup(lookup(env))
	for name := range env {
		e.Reject(name, "is refused")
	}
	err := e.Err()
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows a secret: %v", err)
	}
	for _, want := range []string{"PAYMENTS_POSTGRES_PASSWORD: \"(hidden)\"", "postgres://postgres:xxxxx@db:5432/postgres", "amqp://email:xxxxx@mq:5672/"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
}
