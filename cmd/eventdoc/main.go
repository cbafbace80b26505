// Command eventdoc writes Orderflow's event catalogue, docs/events.md, from
// the JSON Schemas in pkg/events/contract, and its AsyncAPI 3.0.0 document,
// docs/asyncapi.json, from those and internal/registry. It is run by
// `go generate ./pkg/events/contract` and `go generate ./internal/asyncapi`
// (both part of `make generate`):
//
//	eventdoc -o docs/events.md
//	eventdoc -asyncapi docs/asyncapi.json
//
// Without either flag it writes the catalogue to standard output.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"

	"github.com/orderflow/orderflow/internal/asyncapi"
	"github.com/orderflow/orderflow/pkg/events/contract"
)

func main() {
	out := flag.String("o", "", "write the catalogue to this file instead of standard output")
	api := flag.String("asyncapi", "", "write the AsyncAPI document to this file")
	flag.Parse()
	if err := run(*out, *api); err != nil {
		fmt.Fprintln(os.Stderr, "eventdoc:", err)
		os.Exit(1)
	}
}

func run(out, api string) error {
	if out != "" || api == "" {
		doc, err := contract.Catalogue()
		if err != nil {
			return err
		}
		if err := write(out, doc); err != nil {
			return err
		}
	}
	if api != "" {
		doc, err := asyncapi.Generate()
		if err != nil {
			return err
		}
		return write(api, doc)
	}
	return nil
}

// write writes doc to the file out, or to standard output when out is "".
func write(out string, doc []byte) error {
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
