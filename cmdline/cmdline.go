// Package cmdline is the shape of nicmux's and nicmux-ipam's command lines:
// a table of commands, each with its flags, in the style of ip, cnitool and
// nomad. "-h" prints a command's help on stdout; a usage error prints the
// error and the help on stderr. Exit codes: ExitOK, ExitFail, ExitUsage.
//
// It imports nothing of nicmux, so that nicmux-ipam uses it without
// nicmux's packages, and nicmux without nicmux-ipam's.
package cmdline

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit codes of the commands.
const (
	ExitOK    = 0 // done, nothing wrong
	ExitFail  = 1 // the command ran and found errors, or failed
	ExitUsage = 2 // unknown command or flag, wrong arguments
)

// Command is one entry of a program's command table; E is what a command
// runs with.
type Command[E any] struct {
	Name     string
	Synopsis string // the arguments after the name
	Summary  string
	Run      func(e E, args []string) int
}

// Program is a program's command table and its help: Intro, the commands
// with their summaries, then Outro.
type Program[E any] struct {
	Name         string
	Intro, Outro string
	Commands     []Command[E]
}

// Lookup returns the command named name, or nil.
func (p *Program[E]) Lookup(name string) *Command[E] {
	for _, c := range p.Commands {
		if c.Name == name {
			return &c
		}
	}
	return nil
}

// Dispatch runs the command args names ("-h", "-help" and "--help" name
// "help", "-version" and "--version" name "version").
func (p *Program[E]) Dispatch(e E, stderr io.Writer, args []string) int {
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "-version", "--version":
		name = "version"
	}
	cmd := p.Lookup(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n", p.Name, name)
		p.Usage(stderr)
		return ExitUsage
	}
	return cmd.Run(e, rest)
}

// Usage prints the program's help.
func (p *Program[E]) Usage(w io.Writer) {
	fmt.Fprint(w, p.Intro)
	width := 0
	for _, c := range p.Commands {
		width = max(width, len(c.Name))
	}
	for _, c := range p.Commands {
		fmt.Fprintf(w, "  %-*s %s\n", width+2, c.Name, c.Summary)
	}
	fmt.Fprint(w, p.Outro)
}

// Help is the help command: the program's help, or a command's.
func (p *Program[E]) Help(e E, stdout, stderr io.Writer, args []string) int {
	switch {
	case len(args) == 0 || (len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help")):
		p.Usage(stdout)
		return ExitOK
	case len(args) > 1:
		fmt.Fprintf(stderr, "%s help: give at most one command\n", p.Name)
		return ExitUsage
	}
	cmd := p.Lookup(args[0])
	if cmd == nil {
		fmt.Fprintf(stderr, "%s help: unknown command %q\n\n", p.Name, args[0])
		p.Usage(stderr)
		return ExitUsage
	}
	return cmd.Run(e, []string{"-h"})
}

// Flags is a command's flag set, parsed so that flags and arguments may mix
// ("validate a.yaml -json").
type Flags struct {
	*flag.FlagSet
	who   string // "PROGRAM COMMAND", what a usage error starts with
	usage string // "Usage: PROGRAM COMMAND SYNOPSIS", a blank line, the help
}

// NewFlags returns the flag set of command cmd of program; help says what
// the command does, after its synopsis.
func NewFlags[E any](program string, cmd *Command[E], help string) *Flags {
	fs := flag.NewFlagSet(cmd.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	who := program + " " + cmd.Name
	return &Flags{FlagSet: fs, who: who, usage: fmt.Sprintf("Usage: %s %s\n\n%s\n", who, cmd.Synopsis, help)}
}

// Parse parses args and returns the arguments that are not flags, or an
// exit code when the command should stop: ExitOK after -h (its help on
// stdout), ExitUsage after a bad flag (the error and the help on stderr).
func (f *Flags) Parse(stdout, stderr io.Writer, args []string) ([]string, int, bool) {
	var rest []string
	for {
		err := f.FlagSet.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			f.Usage(stdout)
			return nil, ExitOK, false
		}
		if err != nil {
			return nil, f.Fail(stderr, "%v", err), false
		}
		left := f.Args()
		if len(left) == 0 {
			return rest, 0, true
		}
		// flag stops at "--", which it consumes, or at the first non-flag.
		if len(args) > len(left) && args[len(args)-len(left)-1] == "--" {
			return append(rest, left...), 0, true
		}
		rest, args = append(rest, left[0]), left[1:]
	}
}

// Fail reports a usage error on stderr, with the command's help, and
// returns ExitUsage.
func (f *Flags) Fail(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n\n", f.who, fmt.Sprintf(format, args...))
	f.Usage(stderr)
	return ExitUsage
}

// Usage prints the command's help and its flags.
func (f *Flags) Usage(w io.Writer) {
	fmt.Fprint(w, f.usage)
	has := false
	f.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		f.SetOutput(w)
		f.PrintDefaults()
		f.SetOutput(io.Discard)
	}
}
