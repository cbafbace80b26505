package contract

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReleasedSchemasImmutable fails when a released schema file changes
// or disappears: producers and consumers of different ages rely on the
// exact same v1. A version is released by committing its checksums as
// schemas/v<N>.sha256 (sha256sum output, run in schemas/v<N>); a version
// being drafted has no such file yet. A new event may join a released
// version by adding its file and its checksum line.
func TestReleasedSchemasImmutable(t *testing.T) {
	const immutable = "released schemas are immutable; add a v2 instead"
	sumFiles, err := filepath.Glob("schemas/v*.sha256")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sumFiles, filepath.FromSlash("schemas/v1.sha256")) {
		t.Fatalf("schemas/v1.sha256 is missing: %s", immutable)
	}
	for _, sumFile := range sumFiles {
		sumFile = filepath.ToSlash(sumFile)
		v := strings.TrimSuffix(path.Base(sumFile), ".sha256")
		data, err := os.ReadFile(sumFile)
		if err != nil {
			t.Fatalf("%v: %s", err, immutable)
		}
		want := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			sum, name, ok := strings.Cut(sc.Text(), " ")
			name = strings.TrimLeft(name, " *") // "  name" (text) or " *name" (binary)
			if !ok || len(sum) != sha256.Size*2 || name == "" {
				t.Fatalf("%s: malformed line %q, want sha256sum output", sumFile, sc.Text())
			}
			want[name] = sum
		}
		if len(want) == 0 {
			t.Fatalf("%s lists no schemas: %s", sumFile, immutable)
		}
		for name, sum := range want {
			p := path.Join("schemas", v, name)
			raw, err := fs.ReadFile(schemaFS, p)
			if err != nil {
				t.Errorf("%s was released but is gone: %s", p, immutable)
				continue
			}
			got := sha256.Sum256(raw)
			if hex.EncodeToString(got[:]) != sum {
				t.Errorf("%s changed (sha256 %x, released as %s): %s", p, got, sum, immutable)
			}
		}
		files, err := fs.Glob(schemaFS, path.Join("schemas", v, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range files {
			if _, ok := want[path.Base(p)]; !ok {
				t.Errorf("%s has no checksum in %s; when releasing it, run: cd schemas/%s && sha256sum %s >> ../%s.sha256",
					p, sumFile, v, path.Base(p), v)
			}
		}
	}
}
