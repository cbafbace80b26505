package benchrun

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
)

// point is one value of a series at x seconds into the run.
type point struct{ X, Y float64 }

// series is one line of a panel.
type series struct {
	Name, Color string
	Points      []point
}

// panel is one plot of a chart: its series share the y axis.
type panel struct {
	Title, Unit string
	Series      []series
}

// mark is a vertical line across every panel at X seconds, labelled.
type mark struct {
	X     float64
	Label string
}

// Chart layout, in SVG user units.
const (
	chartWidth   = 960
	panelHeight  = 260
	marginLeft   = 70
	marginRight  = 20
	marginTop    = 40
	panelGap     = 70
	legendHeight = 18
)

// writeChart writes panels, one under the other on a shared x axis
// (seconds), as a standalone SVG.
func writeChart(w io.Writer, title string, panels []panel, marks []mark) error {
	bw := bufio.NewWriter(w)
	xmax := 1.0
	for _, p := range panels {
		for _, s := range p.Series {
			for _, pt := range s.Points {
				xmax = math.Max(xmax, pt.X)
			}
		}
	}
	for _, m := range marks {
		xmax = math.Max(xmax, m.X)
	}
	height := marginTop + len(panels)*(panelHeight+panelGap)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(bw, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(bw, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", marginLeft, esc(title))
	plotW := float64(chartWidth - marginLeft - marginRight)
	xpos := func(x float64) float64 { return marginLeft + x/xmax*plotW }
	for i, p := range panels {
		top := float64(marginTop + i*(panelHeight+panelGap) + legendHeight + 10)
		h := float64(panelHeight - legendHeight - 10)
		ymax := 0.0
		for _, s := range p.Series {
			for _, pt := range s.Points {
				ymax = math.Max(ymax, pt.Y)
			}
		}
		ystep := niceStep(ymax)
		ymax = math.Max(ystep, math.Ceil(ymax/ystep)*ystep)
		ypos := func(y float64) float64 { return top + h - y/ymax*h }

		fmt.Fprintf(bw, `<text x="%d" y="%.1f" font-weight="bold">%s</text>`+"\n", marginLeft, top-legendHeight-4, esc(p.Title))
		lx := float64(marginLeft) + 8*float64(len(p.Title)) + 20
		for _, s := range p.Series {
			fmt.Fprintf(bw, `<rect x="%.1f" y="%.1f" width="14" height="4" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
				lx, top-legendHeight-8, s.Color, lx+18, top-legendHeight-4, esc(s.Name))
			lx += 18 + 7*float64(len(s.Name)) + 20
		}
		for k := 0; float64(k)*ystep <= ymax+ystep/2; k++ {
			y := float64(k) * ystep
			fmt.Fprintf(bw, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
				marginLeft, chartWidth-marginRight, ypos(y), ypos(y), marginLeft-6, ypos(y)+4, formatTick(y))
		}
		fmt.Fprintf(bw, `<text x="14" y="%.1f" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>`+"\n",
			top+h/2, top+h/2, esc(p.Unit))
		xstep := niceStep(xmax)
		for k := 0; float64(k)*xstep <= xmax+xstep/100; k++ {
			x := float64(k) * xstep
			fmt.Fprintf(bw, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", xpos(x), top+h+16, formatTick(x))
		}
		fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end">s</text>`+"\n", chartWidth-marginRight, top+h+30)
		for _, m := range marks {
			fmt.Fprintf(bw, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="4 3"/>`+"\n",
				xpos(m.X), xpos(m.X), top, top+h)
			if i == 0 {
				x, anchor := xpos(m.X)+3, "start"
				if x > chartWidth-marginRight-40 { // no room on the right
					x, anchor = xpos(m.X)-3, "end"
				}
				fmt.Fprintf(bw, `<text x="%.1f" y="%.1f" font-size="10" fill="#555" text-anchor="%s">%s</text>`+"\n", x, top+10, anchor, esc(m.Label))
			}
		}
		fmt.Fprintf(bw, `<rect x="%d" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#444"/>`+"\n", marginLeft, top, plotW, h)
		for _, s := range p.Series {
			if len(s.Points) == 0 {
				continue
			}
			fmt.Fprintf(bw, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="`, s.Color)
			for j, pt := range s.Points {
				if j > 0 {
					bw.WriteByte(' ')
				}
				fmt.Fprintf(bw, "%.1f,%.1f", xpos(pt.X), ypos(pt.Y))
			}
			bw.WriteString(`"/>` + "\n")
		}
	}
	bw.WriteString("</svg>\n")
	return bw.Flush()
}

// niceStep is a round tick step (1, 2 or 5 × 10^n) giving about five
// ticks up to max.
func niceStep(max float64) float64 {
	if max <= 0 || math.IsNaN(max) || math.IsInf(max, 0) {
		return 1
	}
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, f := range []float64{1, 2, 5, 10} {
		if raw <= f*mag {
			return f * mag
		}
	}
	return 10 * mag
}

// formatTick prints a tick value: 1500 → "1.5k", 0.5 → "0.5".
func formatTick(v float64) string {
	if math.Abs(v) >= 1000 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
}

func esc(s string) string { return html.EscapeString(s) }
