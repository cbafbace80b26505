// Package supplychain holds tests of what the build downloads: every
// module's go.sum is there and matches the module cache.
package supplychain

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const repoRoot = "../.."

// modules returns the directories, relative to the repository root, that
// hold a go.mod: the main module, tools/ (sqlc, govulncheck) and the
// benchmarks' own modules.
func modules(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != repoRoot && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == "go.mod" {
			rel, err := filepath.Rel(repoRoot, filepath.Dir(p))
			if err != nil {
				return err
			}
			dirs = append(dirs, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".", "tools"} {
		if !slices.Contains(dirs, want) {
			t.Errorf("no go.mod in %s", want)
		}
	}
	return dirs
}

// TestGoSumVerifies checks that each module has its go.sum, so that every
// download is checked against a recorded hash (and, through GOSUMDB, the
// checksum database) rather than trusted on first use, and that `go mod
// verify` passes: the modules in the cache are the ones go.sum names. It
// works offline, from the module cache (a module not downloaded yet is
// not checked). The tools module's many large modules make it the slow
// one (6 to 15 seconds on a shared 2-core machine), so -short skips the
// verify.
func TestGoSumVerifies(t *testing.T) {
	for _, dir := range modules(t) {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			sum, err := os.ReadFile(filepath.Join(repoRoot, dir, "go.sum"))
			if err != nil {
				t.Fatalf("%s/go.mod has no go.sum beside it: run go mod tidy in %s and commit go.sum", dir, dir)
			}
			mod, err := os.ReadFile(filepath.Join(repoRoot, dir, "go.mod"))
			if err != nil {
				t.Fatal(err)
			}
			if len(strings.TrimSpace(string(sum))) == 0 && strings.Contains(string(mod), "require") {
				t.Fatalf("%s/go.sum is empty but go.mod requires modules: run go mod tidy in %s", dir, dir)
			}
			if testing.Short() {
				t.Skip("go mod verify hashes every module in the cache: seconds, up to about 15 for tools on a busy 2-core machine")
			}
			cmd := exec.Command("go", "mod", "verify")
			cmd.Dir = filepath.Join(repoRoot, dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("go mod verify in %s: %v\n%s", dir, err, out)
			}
		})
	}
}
