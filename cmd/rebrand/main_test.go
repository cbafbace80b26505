package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/internal/testenv"
)

// A fork renamed in one step: in a copy of the repository the module and
// the prefix change everywhere, nothing names the old prefix any more, and
// the result builds, vets and passes the tests that tie the code, the
// deploy files and the metrics together. (The whole make test on such a
// copy passed by hand; it takes minutes.)
func TestRebrand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests a copy of the repository")
	}
	// brand is the repository's prefix. The rebrand rewrites the prefix
	// where it names something, followed by _ as here, so in a fork this
	// is the fork's and the test renames the fork (to another name).
	brand := strings.TrimSuffix("orderflow_", "_")
	target := "shop"
	if brand == target {
		target = "store"
	}
	dir := testenv.CopyRepo(t, "../..")
	oldModule, err := modulePath(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := rebrand(dir, "github.com/acme/"+target, target, brand)
	if err != nil {
		t.Fatal(err)
	}
	if n < 100 {
		t.Errorf("%d files changed; the prefix is in far more", n)
	}
	left := regexp.MustCompile(`(^|[^A-Za-z0-9.])` + brand + `[_-]|` + regexp.QuoteMeta(oldModule))
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(".go.yaml.yml.json.md.sql", filepath.Ext(path)) {
			return err
		}
		src, _ := os.ReadFile(path)
		if loc := left.FindIndex(src); loc != nil {
			rel, _ := filepath.Rel(dir, path)
			t.Errorf("%s still names the old prefix: %q", rel, src[max(0, loc[0]-20):min(len(src), loc[1]+20)])
		}
		return nil
	})
	testenv.RunIn(t, dir, "gofmt", "-l", ".")
	testenv.RunIn(t, dir, "go", "build", "./...")
	testenv.RunIn(t, dir, "go", "vet", "./...")
	testenv.RunIn(t, dir, "go", "test", "-count=1", "./internal/registry/", "./pkg/events/outbox/", "./pkg/service/")
	testenv.RunIn(t, dir, "go", "test", "-count=1", "-short", "./deploy/")

	if _, err := rebrand(dir, "github.com/acme/"+target, "Shop!", target); err == nil {
		t.Error("a prefix that cannot name a database was accepted")
	}
}
