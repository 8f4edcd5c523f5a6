package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nicmux/nicmux/conf"
)

// Severities of a finding.
const (
	sevError   = "error"   // the configuration will fail, or silently not do what it says
	sevWarning = "warning" // likely a mistake; -strict makes it fail
	sevNote    = "note"    // what validate could not check; never fails it
)

// finding is one thing validate found, where it is written and what to do
// about it.
type finding struct {
	File     string `json:"file"`
	Line     int    `json:"line,omitempty"`
	Column   int    `json:"column,omitempty"`
	Severity string `json:"severity"`
	// Field is the path of the offending field, as conf.Error spells it.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// String returns the finding as "file:line:col: severity: field: message".
func (f finding) String() string {
	var b strings.Builder
	b.WriteString(f.File)
	if f.Line > 0 {
		fmt.Fprintf(&b, ":%d", f.Line)
		if f.Column > 0 {
			fmt.Fprintf(&b, ":%d", f.Column)
		}
	}
	fmt.Fprintf(&b, ": %s: ", f.Severity)
	if f.Field != "" {
		b.WriteString(f.Field + ": ")
	}
	b.WriteString(f.Message)
	return b.String()
}

func newFinding(sev string, at conf.Position, field, hint, format string, args ...any) finding {
	return finding{File: at.File, Line: at.Line, Column: at.Column, Severity: sev, Field: field,
		Message: fmt.Sprintf(format, args...), Hint: hint}
}

// report is validate's outcome; its JSON form is what -json prints.
type report struct {
	// Files are the conflist and the attachment files checked, in order.
	Files    []string  `json:"files"`
	Findings []finding `json:"findings"`
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
	Notes    int       `json:"notes"`
}

// sort orders the findings by file (in the order the files first come up),
// then by line and column, so that they read top to bottom.
func (r *report) sort() {
	rank := map[string]int{}
	for _, f := range r.Files {
		if _, ok := rank[f]; !ok {
			rank[f] = len(rank)
		}
	}
	for _, f := range r.Findings {
		if _, ok := rank[f.File]; !ok {
			rank[f.File] = len(rank)
		}
	}
	slices.SortStableFunc(r.Findings, func(a, b finding) int {
		if d := rank[a.File] - rank[b.File]; d != 0 {
			return d
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	r.Errors, r.Warnings, r.Notes = 0, 0, 0
	for _, f := range r.Findings {
		switch f.Severity {
		case sevError:
			r.Errors++
		case sevWarning:
			r.Warnings++
		default:
			r.Notes++
		}
	}
}

func (r *report) printText(w io.Writer) {
	for _, f := range r.Findings {
		fmt.Fprintln(w, f)
		if f.Hint != "" {
			fmt.Fprintf(w, "\thint: %s\n", f.Hint)
		}
	}
	files := fmt.Sprintf("%d %s (%s)", len(r.Files), plural(len(r.Files), "file"), strings.Join(r.Files, ", "))
	notes := ""
	if r.Notes > 0 {
		notes = fmt.Sprintf(", %d %s", r.Notes, plural(r.Notes, "note"))
	}
	if r.Errors+r.Warnings == 0 {
		fmt.Fprintf(w, "ok: %s%s\n", files, notes)
		return
	}
	fmt.Fprintf(w, "%d %s, %d %s%s in %s\n", r.Errors, plural(r.Errors, "error"), r.Warnings, plural(r.Warnings, "warning"), notes, files)
}

func (r *report) printJSON(w io.Writer) {
	if r.Files == nil {
		r.Files = []string{}
	}
	if r.Findings == nil {
		r.Findings = []finding{}
	}
	printJSON(w, r)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
