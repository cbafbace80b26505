// Package docs holds the repository's own documentation: design.md (the
// architecture, the contract, the guarantees), runbook.md (one section per
// alert, then the operational procedures), events.md (generated from the
// JSON Schemas) and new-service.md. It has no Go code of its own.
//
// The test holds every Markdown file of the repository to one rule: no link
// leaves the repository, so a clone reads whole.
//
//   - A relative link (inline, image, reference definition) must resolve,
//     from the file's own directory, to a file or directory inside the
//     repository that exists. A link starting with "/" is taken from the
//     repository's root, as GitHub does.
//   - A "#fragment" into a Markdown file (the same one, or another) must
//     name a heading of that file, by GitHub's anchor for it (lower case,
//     spaces to hyphens, punctuation dropped, "-1", "-2" for repeats), or an
//     explicit <a id="..."> / <a name="...">.
//   - An absolute URL is refused, whether written as a link, an autolink
//     (<https://...>) or bare in the text (GitHub links bare URLs too),
//     unless its host is the machine itself: localhost, 127.0.0.1 or [::1].
//     Those are the running stack (Jaeger on http://localhost:16686,
//     Grafana, Prometheus, the services), not a place outside the
//     repository, and a reader of a clone has them once `make run` or
//     `make up` runs. Any other scheme (mailto:, ftp:, ...) is refused too.
//     The allow-list of outside hosts is empty on purpose: the design, the
//     contract and the procedures must all be here.
//
// Code (fenced blocks, indented blocks, `code spans`) is not rendered as
// links and is not checked: a curl command or an OTLP endpoint in code is
// an example, not a link.
//
// Files checked: every *.md below the repository root except under .git,
// .data (make run's and make bench's output, ignored by git), node_modules,
// vendor directories and bench/watermill (a module of its own, benchmarking
// another project).
package docs

import (
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository's root as seen from this package's directory.
const repoRoot = ".."

// knownBroken are links the test lets pass for now, as "FILE -> TARGET"
// (a key with a "*" matches as path.Match does, "*" standing for one path
// segment). Each is a known fault with an owner; the map should be empty,
// and the test fails on an entry that no longer matches anything.
var knownBroken = map[string]bool{}

// knownBrokenEntry returns the knownBroken entry that allows key, or "".
func knownBrokenEntry(key string) string {
	if knownBroken[key] {
		return key
	}
	for k := range knownBroken {
		if ok, _ := path.Match(k, key); ok && strings.Contains(k, "*") {
			return k
		}
	}
	return ""
}

// skipDirs are directories (relative to the root, slash-separated) whose
// Markdown is not the repository's own documentation.
var skipDirs = map[string]bool{
	".git":            true,
	".data":           true,
	"bench/watermill": true,
}

// localHosts are the hosts an absolute URL may name: the machine itself.
var localHosts = map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}

// markdownFiles lists every Markdown file to check, slash-separated and
// relative to the root.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(repoRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoRoot, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if skipDirs[rel] || d.Name() == "node_modules" || d.Name() == "vendor" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.EqualFold(path.Ext(rel), ".md") {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// link is one link found in a Markdown file.
type link struct {
	line   int
	target string
	bare   bool // a URL bare in the text or an autolink, not [text](target)
}

var (
	fenceRe = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})")
	// inline links and images: [text](target "title"); the text may hold
	// one level of brackets (an image inside a link, `a[0]`).
	inlineRe = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)`)
	// reference definitions: [label]: target
	refDefRe   = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	autolinkRe = regexp.MustCompile(`<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*)>`)
	// bare URLs, as GitHub's autolink extension finds them.
	bareRe     = regexp.MustCompile(`(?i)\b(?:https?://|ftp://|www\.)[^\s<>]+`)
	htmlHrefRe = regexp.MustCompile(`(?i)<(?:a|img)\s[^>]*?(?:href|src)\s*=\s*["']([^"']*)["']`)
	htmlIDRe   = regexp.MustCompile(`(?i)<a\s[^>]*?(?:id|name)\s*=\s*["']([^"']+)["']`)
	headingRe  = regexp.MustCompile(`^ {0,3}(#{1,6})(?:\s+(.*?))?\s*$`)
	setextRe   = regexp.MustCompile(`^ {0,3}(=+|-+)\s*$`)
)

// parsed is what the test needs of one Markdown file.
type parsed struct {
	links   []link
	anchors map[string]bool
}

// parse reads a Markdown file's links and the anchors of its headings,
// leaving code blocks and code spans out.
func parse(src string) parsed {
	p := parsed{anchors: map[string]bool{}}
	seen := map[string]int{} // heading slugs, for GitHub's -1, -2 suffixes
	addHeading := func(text string) {
		slug := githubAnchor(text)
		if n, ok := seen[slug]; ok {
			seen[slug] = n + 1
			slug = fmt.Sprintf("%s-%d", slug, n+1)
		} else {
			seen[slug] = 0
		}
		p.anchors[slug] = true
	}
	lines := strings.Split(src, "\n")
	fence := ""       // the open fence's marker, "" outside a fenced block
	prevText := ""    // the previous line, if it could be a setext heading's text
	prevBlank := true // whether the previous line was blank (indented code needs it)
	inIndented := false
	for i, line := range lines {
		line = strings.TrimRight(line, "\r")
		if fence != "" {
			if m := fenceRe.FindStringSubmatch(line); m != nil && m[1][0] == fence[0] && len(m[1]) >= len(fence) &&
				strings.TrimSpace(line[strings.Index(line, m[1])+len(m[1]):]) == "" {
				fence = ""
			}
			continue
		}
		if m := fenceRe.FindStringSubmatch(line); m != nil {
			fence, prevText, prevBlank = m[1], "", false
			continue
		}
		blank := strings.TrimSpace(line) == ""
		indented := strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "\t")
		if inIndented && (indented || blank) {
			prevBlank = blank
			continue
		}
		inIndented = false
		if indented && prevBlank && !blank {
			// An indented code block starts only after a blank line; an
			// indented line right after text continues a paragraph or a
			// list item, and is checked as text.
			inIndented = true
			prevText, prevBlank = "", false
			continue
		}
		if blank {
			prevText, prevBlank = "", true
			continue
		}
		if m := headingRe.FindStringSubmatch(line); m != nil {
			addHeading(strings.TrimRight(strings.TrimSpace(m[2]), "#"))
		} else if m := setextRe.FindStringSubmatch(line); m != nil && prevText != "" {
			addHeading(prevText)
		}
		for _, m := range htmlIDRe.FindAllStringSubmatch(line, -1) {
			p.anchors[m[1]] = true
		}
		p.links = append(p.links, lineLinks(stripCodeSpans(line), i+1)...)
		prevText, prevBlank = strings.TrimSpace(line), false
		if headingRe.MatchString(line) || strings.HasPrefix(strings.TrimSpace(line), "|") {
			prevText = "" // a heading or a table row is no setext heading's text
		}
	}
	return p
}

// lineLinks returns the links of one line of text (code spans removed).
func lineLinks(line string, n int) []link {
	var links []link
	rest := line
	if m := refDefRe.FindStringSubmatch(line); m != nil {
		links = append(links, link{line: n, target: strings.Trim(m[1], "<>")})
		rest = ""
	}
	// Inline links first; blank them out so their targets are not found
	// again as bare URLs.
	rest = inlineRe.ReplaceAllStringFunc(rest, func(s string) string {
		m := inlineRe.FindStringSubmatch(s)
		links = append(links, link{line: n, target: strings.Trim(m[1], "<>")})
		return strings.Repeat(" ", len(s))
	})
	for _, m := range htmlHrefRe.FindAllStringSubmatch(rest, -1) {
		links = append(links, link{line: n, target: m[1]})
	}
	rest = htmlHrefRe.ReplaceAllString(rest, " ")
	rest = autolinkRe.ReplaceAllStringFunc(rest, func(s string) string {
		links = append(links, link{line: n, target: s[1 : len(s)-1], bare: true})
		return " "
	})
	for _, u := range bareRe.FindAllString(rest, -1) {
		// GitHub leaves trailing punctuation out of a bare URL.
		u = strings.TrimRight(u, ".,:;!?*_~'\"")
		for strings.HasSuffix(u, ")") && strings.Count(u, "(") < strings.Count(u, ")") {
			u = strings.TrimSuffix(u, ")")
		}
		links = append(links, link{line: n, target: u, bare: true})
	}
	return links
}

// stripCodeSpans blanks out `code spans` (any run of backticks up to the
// same run), which Markdown does not scan for links.
func stripCodeSpans(line string) string {
	var b strings.Builder
	for i := 0; i < len(line); {
		if line[i] != '`' {
			b.WriteByte(line[i])
			i++
			continue
		}
		j := i
		for j < len(line) && line[j] == '`' {
			j++
		}
		ticks := line[i:j]
		end := -1
		for k := j; k < len(line); {
			idx := strings.Index(line[k:], ticks)
			if idx < 0 {
				break
			}
			e := k + idx
			if e+len(ticks) < len(line) && line[e+len(ticks)] == '`' { // a longer run
				for e < len(line) && line[e] == '`' {
					e++
				}
				k = e
				continue
			}
			end = e
			break
		}
		if end < 0 { // no closing run: the backticks are literal
			b.WriteString(ticks)
			i = j
			continue
		}
		b.WriteString(strings.Repeat(" ", end+len(ticks)-i))
		i = end + len(ticks)
	}
	return b.String()
}

var (
	mdLinkTextRe = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	htmlTagRe    = regexp.MustCompile(`<[^>]+>`)
)

// githubAnchor is the id GitHub gives a heading: its text as rendered
// (links by their text, code by its content, no emphasis marks, no HTML
// tags), lower case, each space a hyphen, and every character dropped
// that is neither a letter, a digit, a hyphen nor an underscore.
func githubAnchor(heading string) string {
	text := mdLinkTextRe.ReplaceAllString(heading, "$1")
	text = htmlTagRe.ReplaceAllString(text, "")
	text = strings.NewReplacer("`", "", "*", "").Replace(text)
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// check returns what is wrong with one link of file (slash-separated,
// relative to the root), or "" when it stays in the repository and
// resolves. files caches the parsed Markdown files by path.
func check(file string, l link, files map[string]parsed, read func(string) (parsed, error)) string {
	target := l.target
	if target == "" {
		return "an empty link"
	}
	if strings.HasPrefix(strings.ToLower(target), "www.") {
		target = "http://" + target
	}
	u, err := url.Parse(target)
	if err != nil {
		return fmt.Sprintf("not a URL: %v", err)
	}
	if u.Scheme != "" || u.Host != "" {
		if (u.Scheme == "http" || u.Scheme == "https") && localHosts[u.Hostname()] {
			return ""
		}
		return "leaves the repository: an absolute URL (only localhost, 127.0.0.1 and [::1], the running stack, are allowed)"
	}
	if l.bare {
		return "" // not reached: bare links are absolute
	}
	// A path, relative to the file's directory or, with a leading slash,
	// to the root.
	p, err := url.PathUnescape(u.Path)
	if err != nil {
		return fmt.Sprintf("bad escape in the path: %v", err)
	}
	dest := file
	if p != "" {
		if strings.HasPrefix(p, "/") {
			dest = path.Clean(strings.TrimPrefix(p, "/"))
		} else {
			dest = path.Join(path.Dir(file), p)
		}
		if dest == ".." || strings.HasPrefix(dest, "../") {
			return "leaves the repository: the path goes above its root"
		}
		info, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(dest)))
		if err != nil {
			return fmt.Sprintf("no such file in the repository: %s", dest)
		}
		if info.IsDir() {
			if u.Fragment != "" {
				return fmt.Sprintf("an anchor into a directory: %s", dest)
			}
			return ""
		}
	}
	if u.Fragment == "" || !strings.EqualFold(path.Ext(dest), ".md") {
		return ""
	}
	pf, ok := files[dest]
	if !ok {
		var err error
		if pf, err = read(dest); err != nil {
			return err.Error()
		}
		files[dest] = pf
	}
	frag, err := url.PathUnescape(u.Fragment)
	if err != nil {
		frag = u.Fragment
	}
	if !pf.anchors[frag] && !pf.anchors[strings.ToLower(frag)] {
		return fmt.Sprintf("%s has no heading with the anchor #%s", dest, frag)
	}
	return ""
}

func readParsed(rel string) (parsed, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(rel)))
	if err != nil {
		return parsed{}, err
	}
	return parse(string(b)), nil
}

// TestLinksStayInTheRepository holds every Markdown file of the repository
// to the rule of the package doc.
func TestLinksStayInTheRepository(t *testing.T) {
	files := markdownFiles(t)
	for _, want := range []string{"README.md", "docs/design.md", "docs/runbook.md", "docs/events.md"} {
		if !slices.Contains(files, want) {
			t.Errorf("%s: not found among the Markdown files %v", want, files)
		}
	}
	cache := map[string]parsed{}
	used := map[string]bool{}
	for _, f := range files {
		pf, err := readParsed(f)
		if err != nil {
			t.Fatal(err)
		}
		cache[f] = pf
		for _, l := range pf.links {
			problem := check(f, l, cache, readParsed)
			if problem == "" {
				continue
			}
			key := f + " -> " + l.target
			if k := knownBrokenEntry(key); k != "" {
				used[k] = true
				t.Logf("%s:%d: %s: %s (known, allowed for now by knownBroken)", f, l.line, l.target, problem)
				continue
			}
			t.Errorf("%s:%d: %s: %s", f, l.line, l.target, problem)
		}
	}
	for k := range knownBroken {
		if !used[k] {
			t.Errorf("knownBroken lists %q, which is no longer broken (or gone): remove the entry", k)
		}
	}
}

// TestTheRuleCatchesWhatItMust checks the parser and the rule on small
// documents, so that a link the test should refuse cannot pass because it
// was never found.
func TestTheRuleCatchesWhatItMust(t *testing.T) {
	const doc = "# Title\n" +
		"\n" +
		"## A `code` heading, with punctuation!\n" +
		"\n" +
		"## Shop — pipeline\n" +
		"\n" +
		"## Repeat\n" +
		"## Repeat\n" +
		"\n" +
		"Setext heading\n" +
		"--------------\n" +
		"\n" +
		"<a id=\"explicit\"></a>\n" +
		"[ok](#title) [ok](#a-code-heading-with-punctuation) [ok](#shop--pipeline)\n" +
		"[ok](#repeat-1) [ok](#setext-heading) [ok](#explicit) [ok](events.md) [ok](events.md#orderplaced-v1)\n" +
		"[ok](../pkg/events/contract/schemas) [ok](http://localhost:16686) bare ok http://127.0.0.1:9090/alerts.\n" +
		"[bad](#nope) [bad](../../shared/DESIGN.md) [bad](missing.md) [bad](https://example.com/x)\n" +
		"bare bad https://example.com/y, <https://example.com/z> [bad](mailto:a@example.com) [ref]\n" +
		"[bad](events.md#no-such-event) ![bad](nope.svg) <a href=\"https://example.com/h\">h</a>\n" +
		"\n" +
		"[ref]: https://example.com/ref\n" +
		"\n" +
		"`https://example.com/in-a-code-span` and ``[x](nowhere.md)``\n" +
		"\n" +
		"```sh\n" +
		"curl https://example.com/in-a-fence   # [x](nowhere.md)\n" +
		"```\n" +
		"\n" +
		"    https://example.com/indented-code\n"
	pf := parse(doc)
	cache := map[string]parsed{"docs/x.md": pf}
	var ok, bad []string
	for _, l := range pf.links {
		if check("docs/x.md", l, cache, readParsed) == "" {
			ok = append(ok, l.target)
		} else {
			bad = append(bad, l.target)
		}
	}
	wantOK := []string{"#title", "#a-code-heading-with-punctuation", "#shop--pipeline", "#repeat-1",
		"#setext-heading", "#explicit", "events.md", "events.md#orderplaced-v1", "../pkg/events/contract/schemas",
		"http://localhost:16686", "http://127.0.0.1:9090/alerts"}
	wantBad := []string{"#nope", "../../shared/DESIGN.md", "missing.md", "https://example.com/x",
		"https://example.com/y", "https://example.com/z", "mailto:a@example.com", "events.md#no-such-event",
		"nope.svg", "https://example.com/h", "https://example.com/ref"}
	slices.Sort(ok)
	slices.Sort(bad)
	slices.Sort(wantOK)
	slices.Sort(wantBad)
	if !slices.Equal(ok, wantOK) {
		t.Errorf("links passed:\n got %q\nwant %q", ok, wantOK)
	}
	if !slices.Equal(bad, wantBad) {
		t.Errorf("links refused:\n got %q\nwant %q", bad, wantBad)
	}
}
