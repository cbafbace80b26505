package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	dir := copyRepo(t)
	var out bytes.Buffer
	if err := newService([]string{"audit", "--port", "8085", "--consumes", "orders,payments", "--emits"}, dir, &out); err != nil {
		t.Fatalf("new service: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	for _, want := range []string{"services/audit/audit.go", "services/audit/internal/auditdb/audit.sql.go", "cmd/audit/main.go", "db/queries/audit/audit.sql"} {
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			t.Errorf("not written: %s", want)
		}
	}
	runIn(t, dir, "gofmt", "-l", "services/audit", "cmd/audit", "internal")
	runIn(t, dir, "go", "build", "./...")
	runIn(t, dir, "go", "vet", "./services/audit/", "./cmd/audit/", "./internal/registry/", "./internal/devstack/")
	runIn(t, dir, "go", "tool", "-modfile=tools/go.mod", "sqlc", "diff")
	runIn(t, dir, "go", "test", "-race", "-count=1", "./services/audit/", "./internal/registry/", "./internal/chaos/")
	runIn(t, dir, "go", "test", "-count=1", "-short", "./deploy/")

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

// copyRepo copies the repository's files (git ls-files) to a temporary
// directory.
func copyRepo(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	list, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dir := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		} else if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runIn(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || (name == "gofmt" && len(bytes.TrimSpace(out)) > 0) {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
