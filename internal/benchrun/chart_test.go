package benchrun

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func TestWriteChart(t *testing.T) {
	panels := []panel{
		{Title: "Orders <per> second", Unit: "orders/s", Series: []series{
			{Name: "accepted", Color: "#1f77b4", Points: []point{{1, 300}, {2, 310}, {3, 0}}},
			{Name: "empty", Color: "#000"},
		}},
		{Title: "Backlog", Unit: "records", Series: []series{{Name: "lag & more", Color: "#d62728", Points: []point{{1, 0}, {2, 4200}}}}},
	}
	var b bytes.Buffer
	if err := writeChart(&b, "run", panels, []mark{{X: 0, Label: "300/s"}, {X: 3, Label: "+20s"}}); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, one polyline per series with points, the text
	// escaped.
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, b.String())
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 2 {
		t.Errorf("%d polylines, want 2", polylines)
	}
	for _, want := range []string{"Orders &lt;per&gt; second", "lag &amp; more", ">5k<", "+20s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("chart lacks %q", want)
		}
	}
}

func TestNiceStep(t *testing.T) {
	for max, want := range map[float64]float64{0: 1, 4200: 1000, 1000: 200, 7: 2, 0.3: 0.1} {
		if got := niceStep(max); got != want {
			t.Errorf("niceStep(%v) = %v, want %v", max, got, want)
		}
	}
}
