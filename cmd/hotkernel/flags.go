package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// parseInterspersed parses fs over args while allowing flags after
// positional arguments ("validate a.ptx --entry add"), which the flag
// package alone does not. A lone "--" ends flag parsing. It returns the
// positional arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// newFlagSet returns a FlagSet for a subcommand that reports errors
// instead of exiting, printing its usage to w.
func newFlagSet(name, synopsis string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		io.WriteString(w, "usage: hotkernel "+synopsis+"\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlagsOnly parses a command that takes flags and no arguments. It
// returns ok false with the exit code when the command must stop here:
// exitOK after -h, exitUsage for bad flags or a stray argument (named on
// stderr).
func parseFlagsOnly(fs *flag.FlagSet, args []string, stderr io.Writer) (exit int, ok bool) {
	rest, err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	case err != nil:
		return exitUsage, false
	case len(rest) > 0:
		fmt.Fprintf(stderr, "hotkernel %s: unexpected argument %q\n", fs.Name(), rest[0])
		return exitUsage, false
	}
	return exitOK, true
}
