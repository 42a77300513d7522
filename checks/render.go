package checks

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// JUnit renders the suite as JUnit XML (one testsuite per category), for CI
// test reporting.
func JUnit(s *Suite) ([]byte, error) {
	type failure struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	}
	type testcase struct {
		Name      string   `xml:"name,attr"`
		Classname string   `xml:"classname,attr"`
		Time      string   `xml:"time,attr"`
		Failure   *failure `xml:"failure,omitempty"`
		Skipped   *failure `xml:"skipped,omitempty"`
		SystemOut string   `xml:"system-out,omitempty"`
	}
	type testsuite struct {
		Name     string     `xml:"name,attr"`
		Tests    int        `xml:"tests,attr"`
		Failures int        `xml:"failures,attr"`
		Skipped  int        `xml:"skipped,attr"`
		Cases    []testcase `xml:"testcase"`
	}
	type testsuites struct {
		XMLName xml.Name    `xml:"testsuites"`
		Name    string      `xml:"name,attr"`
		Suites  []testsuite `xml:"testsuite"`
	}
	out := testsuites{Name: "lawsker-deploy verify"}
	for _, cat := range Categories {
		ts := testsuite{Name: string(cat)}
		for _, r := range s.Results {
			if r.Category != cat {
				continue
			}
			tc := testcase{Name: r.Name, Classname: "verify." + string(cat), Time: fmt.Sprintf("%.3f", r.Duration.Seconds()), SystemOut: r.Message}
			switch r.Status {
			case Fail:
				tc.Failure = &failure{Message: r.Message, Text: r.Message}
				ts.Failures++
			case Skip:
				tc.Skipped = &failure{Message: r.Message}
				ts.Skipped++
			}
			ts.Tests++
			ts.Cases = append(ts.Cases, tc)
		}
		if ts.Tests > 0 {
			out.Suites = append(out.Suites, ts)
		}
	}
	data, err := xml.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(data, '\n')...), nil
}

var icons = map[Status]string{Pass: "✅", Fail: "❌", Warn: "⚠️", Skip: "⏭️"}

// Markdown renders a summary fit for a GitHub step summary.
func Markdown(s *Suite, title string) string {
	var b strings.Builder
	verdict := "passed"
	if s.Failed() {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "## %s: %s\n\n", title, verdict)
	fmt.Fprintf(&b, "%d passed, %d failed, %d warnings, %d skipped in %.1f s\n\n", s.Count(Pass), s.Count(Fail), s.Count(Warn), s.Count(Skip), s.Duration.Seconds())
	b.WriteString("| | check | category | time | result |\n|---|---|---|---|---|\n")
	for _, r := range s.Results {
		fmt.Fprintf(&b, "| %s | %s | %s | %d ms | %s |\n", icons[r.Status], mdEscape(r.Name), r.Category, r.Millis, mdEscape(r.Message))
	}
	return b.String()
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ")
}

// Table renders the results for a terminal.
func Table(s *Suite) string {
	var b strings.Builder
	width := 0
	for _, r := range s.Results {
		width = max(width, len(r.Name))
	}
	for _, r := range s.Results {
		fmt.Fprintf(&b, "%-4s  %-11s %-*s  %6d ms  %s\n", strings.ToUpper(string(r.Status)), r.Category, width, r.Name, r.Millis, mdEscape(r.Message))
	}
	fmt.Fprintf(&b, "\n%d passed, %d failed, %d warnings, %d skipped in %.1f s\n", s.Count(Pass), s.Count(Fail), s.Count(Warn), s.Count(Skip), s.Duration.Seconds())
	return b.String()
}
