package main

import (
	"flag"
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
