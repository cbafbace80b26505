// Command eventdoc writes Orderflow's event catalogue, docs/events.md, from
// the JSON Schemas in pkg/events/contract. It is run by
// `go generate ./pkg/events/contract` (part of `make generate`):
//
//	eventdoc -o docs/events.md
//
// Without -o it writes to standard output.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/orderflow/orderflow/pkg/events/contract"
)

func main() {
	out := flag.String("o", "", "write the catalogue to this file instead of standard output")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "eventdoc:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	doc, err := contract.Catalogue()
	if err != nil {
		return err
	}
	if out == "" {
		_, err := os.Stdout.Write(doc)
		return err
	}
	// Leave an up-to-date file alone, so its mtime does not trigger rebuilds.
	if old, err := os.ReadFile(out); err == nil && bytes.Equal(old, doc) {
		return nil
	}
	return os.WriteFile(out, doc, 0o644)
}
