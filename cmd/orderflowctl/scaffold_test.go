package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/orderflow/orderflow/internal/testenv"
)

// The scaffold in a copy of the repository: the new service builds, its
// own tests (the conformance suite and its HTTP view) pass, and so do the
// tests that hold every list of services to the registry (registry,
// deploy) and make chaos's checker, which expects each consumer's dead
// letters: a forgotten wiring fails here. (The whole make test in such a
// copy passed by hand; it takes minutes.)
func TestNewServiceBuildsAndPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests a copy of the repository")
	}
	dir := testenv.CopyRepo(t, "../..")
	var out bytes.Buffer
	if err := newService([]string{"audit", "--port", "8085", "--consumes", "orders,payments", "--emits"}, dir, &out); err != nil {
		t.Fatalf("new service: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	for _, want := range []string{"services/audit/audit.go", "services/audit/openapi.json", "services/audit/openapi_test.go", "services/audit/internal/auditdb/audit.sql.go", "cmd/audit/main.go", "db/queries/audit/audit.sql"} {
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			t.Errorf("not written: %s", want)
		}
	}
	testenv.RunIn(t, dir, "gofmt", "-l", "services/audit", "cmd/audit", "internal")
	testenv.RunIn(t, dir, "go", "build", "./...")
	testenv.RunIn(t, dir, "go", "vet", "./services/audit/", "./cmd/audit/", "./internal/registry/", "./internal/devstack/")
	testenv.RunIn(t, dir, "go", "tool", "-modfile=tools/go.mod", "sqlc", "diff")
	testenv.RunIn(t, dir, "go", "test", "-race", "-count=1", "./services/audit/", "./internal/registry/", "./internal/chaos/")
	testenv.RunIn(t, dir, "go", "test", "-count=1", "-short", "./deploy/")

	// A second time: refused, nothing changed.
	if err := newService([]string{"audit", "--port", "8086", "--consumes", "orders"}, dir, io.Discard); err == nil {
		t.Error("a second service named audit was accepted")
	}
}

func TestNewServiceRefusesWhatCannotWork(t *testing.T) {
	for _, args := range [][]string{
		{"payments", "--port", "8090", "--consumes", "orders"},   // registered
		{"Audit", "--port", "8090", "--consumes", "orders"},      // not a package name
		{"audit", "--port", "8080", "--consumes", "orders"},      // orders' port
		{"audit", "--port", "8090", "--consumes", "nosuchtopic"}, // nobody emits it
		{"audit", "--port", "8090"},                              // consumes nothing
		{"audit", "--port", "80", "--consumes", "orders"},        // privileged port
		{"--port", "8090", "--consumes", "orders"},               // no name
	} {
		err := newService(args, t.TempDir(), io.Discard)
		if err == nil {
			t.Errorf("new service %v: accepted", args)
		}
	}
}
