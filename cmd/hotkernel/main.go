// Command hotkernel validates kernel code artifacts and hosts hot-reloadable
// compute kernels.
//
// Usage:
//
//	hotkernel <command> [flags] [arguments]
//
// Run "hotkernel help" for the list of commands.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// Exit codes shared by every command.
const (
	exitOK      = 0 // everything asked for succeeded
	exitFailure = 1 // the command ran and found a failure (an invalid file, a failed reload)
	exitUsage   = 2 // the command could not run as asked (bad flags, unreadable input)
)

// command is one subcommand of hotkernel.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands returns the subcommand table. It is a function rather than a
// package variable so that "help" can list the table it belongs to.
func commands() map[string]command {
	return map[string]command{
		"bench":    {"measure throughput and reload pauses on the embedded WebAssembly backend, or on a GPU with --backend cuda", runBench},
		"demo":     {"run a live-reload demo on the embedded WebAssembly backend", runDemo},
		"reload":   {"reload a kernel of a running daemon, printing each phase as it ends", runReload},
		"rollback": {"roll a kernel of a running daemon back to an earlier version", runRollback},
		"send":     {"send messages from stdin to a kernel of a running daemon and print its outputs", runSend},
		"serve":    {"run the daemon: serve a kernel repository over HTTP, reloading on changes", runServe},
		"status":   {"list the kernels of a running daemon", runStatus},
		"validate": {"check kernel code artifacts (PTX, CUBIN, SPIR-V, WGSL, MSL, metallib, WASM)", runValidate},
		"version":  {"print the hotkernel version", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	cmd, ok := commands()[name]
	if !ok {
		fmt.Fprintf(stderr, "hotkernel: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: hotkernel <command> [flags] [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `run "hotkernel <command> -h" for the flags of a command`)
}

// version is the hotkernel release; set with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: hotkernel version")
		return exitUsage
	}
	fmt.Fprintln(stdout, "hotkernel", version)
	return exitOK
}
