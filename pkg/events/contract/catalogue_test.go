package contract

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestCatalogueUpToDate(t *testing.T) {
	want, err := Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../../docs/events.md")
	if err != nil {
		t.Fatalf("%v: docs/events.md is stale: run make generate", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/events.md is stale: run make generate")
	}
}

func TestCatalogueListsEveryEvent(t *testing.T) {
	doc, err := Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	prev := -1
	for _, f := range schemaFiles {
		topic, _ := TopicOf(f.name)
		section := "## " + f.name + " v" + strconv.Itoa(f.version) + "\n\n- Topic: `" + topic + "`\n- Emitter: the " + topic + " service\n"
		if !bytes.Contains(doc, []byte(section)) {
			t.Errorf("catalogue has no section starting %q", section)
		}
	}
	// Sections follow the pipeline (DESIGN.md's order), not the alphabet.
	for _, name := range catalogueOrder {
		i := strings.Index(string(doc), "## "+name+" v1\n")
		if i < prev {
			t.Errorf("%s is out of order in the catalogue", name)
		}
		prev = i
	}
}
