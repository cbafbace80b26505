// Command rebrand makes a fork its own in one step: it renames the Go
// module and the prefix every service derives its names from, in every
// file of the repository:
//
//	go run ./cmd/rebrand -module github.com/acme/shop -name shop
//
// The prefix names the databases (orderflow_payments becomes
// shop_payments), consumer groups, connections and Kafka client ids
// (orderflow-payments), ce_source (orderflow/payments) and the metrics
// (orderflow_consumer_lag), in the code, the tests, the deploy files,
// dashboards and alert rules and the docs alike, so they stay consistent.
// The product's display name in prose ("Orderflow"), the commands
// (cmd/orderflow, orderflowctl) and the released event schemas (their $id
// is pinned) are left alone. Run it on a clean checkout, then make
// generate and make test (TestRebrand does so in a copy).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

func main() {
	module := flag.String("module", "", "the new module path, e.g. github.com/acme/shop")
	name := flag.String("name", "", "the new prefix, e.g. shop (lower-case letters and digits)")
	from := flag.String("from", "orderflow", "the prefix the repository has now")
	dir := flag.String("dir", ".", "the repository's root")
	flag.Parse()
	n, err := rebrand(*dir, *module, *name, *from)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rebrand:", err)
		os.Exit(2)
	}
	fmt.Printf("rebrand: %d files changed; now run make generate and make test\n", n)
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9]{1,30}$`)

// rebrand rewrites the files under dir and returns how many changed.
func rebrand(dir, newModule, newName, oldName string) (int, error) {
	switch {
	case newModule == "" || strings.ContainsAny(newModule, " \t\"'`"):
		return 0, errors.New("-module: want a module path, e.g. github.com/acme/shop")
	case !validName.MatchString(newName):
		return 0, errors.New("-name: 2 to 31 lower-case letters and digits, starting with a letter (it goes into database and metric names)")
	}
	oldModule, err := modulePath(dir)
	if err != nil {
		return 0, err
	}
	// The prefix where it names something: followed by _ (databases,
	// metrics) or - (groups, connections, client ids, dashboard uids and
	// files), or by / for ce_source but not in a path such as
	// cmd/orderflow/; never inside a longer word.
	q := regexp.QuoteMeta(oldName)
	named := regexp.MustCompile(`(^|[^A-Za-z0-9.])` + q + `([_-])`)
	source := regexp.MustCompile(`(^|[^A-Za-z0-9/.])` + q + `(/)`)
	renamed := regexp.MustCompile(`^` + q + `[_-]`)
	var moves [][2]string
	changed := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".data", "node_modules":
				return filepath.SkipDir
			}
			if rel == filepath.Join("pkg", "events", "contract", "schemas") {
				return filepath.SkipDir // released schemas are immutable
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil || bytes.IndexByte(src, 0) >= 0 {
			return err // binary files are left alone
		}
		if renamed.MatchString(d.Name()) {
			moves = append(moves, [2]string{path, filepath.Join(filepath.Dir(path), newName+strings.TrimPrefix(d.Name(), oldName))})
		}
		out := bytes.ReplaceAll(src, []byte(oldModule), []byte(newModule))
		out = named.ReplaceAll(out, []byte("${1}"+newName+"${2}"))
		out = source.ReplaceAll(out, []byte("${1}"+newName+"${2}"))
		if bytes.Equal(out, src) {
			return nil
		}
		if strings.HasSuffix(path, ".go") {
			// Names of another length shift gofmt's alignment.
			if out, err = format.Source(out); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		}
		changed++
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(path, out, info.Mode().Perm())
	})
	if err != nil {
		return changed, err
	}
	// Files named after the prefix (the dashboards) follow the references
	// to them, renamed above.
	for _, m := range moves {
		if err := os.Rename(m[0], m[1]); err != nil {
			return changed, err
		}
	}
	return changed, nil
}

// modulePath is the module line of dir's go.mod.
func modulePath(dir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("run rebrand at the repository's root: %w", err)
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(raw)
	if m == nil {
		return "", errors.New("go.mod has no module line")
	}
	return string(m[1]), nil
}
