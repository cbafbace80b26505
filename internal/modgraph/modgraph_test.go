// Package modgraph holds a test of the main module's dependency graph.
package modgraph

import (
	"os/exec"
	"strings"
	"testing"
)

// Every forker inherits the main module's graph: build tools live in
// modules of their own (tools/go.mod) and must not come back into it.
func TestToolsStayOutOfTheMainGraph(t *testing.T) {
	out, err := exec.Command("go", "mod", "graph").Output()
	if err != nil {
		t.Fatalf("go mod graph: %v", err)
	}
	for _, tool := range []string{"github.com/sqlc-dev/sqlc", "github.com/pganalyze/pg_query_go", "github.com/tetratelabs/wazero"} {
		if strings.Contains(string(out), tool) {
			t.Errorf("the main module's graph carries %s: keep build tools in tools/go.mod (go tool -modfile=tools/go.mod)", tool)
		}
	}
}
