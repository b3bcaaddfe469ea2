package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hotkernel/hotkernel/server"
)

// defaultAddr is where the client commands look for the daemon when
// neither --addr nor HOTKERNEL_ADDR says otherwise.
const defaultAddr = "http://" + defaultListen

// client talks to a running daemon for one command.
type client struct {
	cmd    string // the command's name, for messages
	addr   string
	token  string
	hc     *http.Client
	stderr io.Writer
}

// clientFlags adds --addr and --token to fs and returns the client they
// configure once fs is parsed.
func clientFlags(fs *flag.FlagSet, stderr io.Writer) *client {
	c := &client{cmd: fs.Name(), hc: &http.Client{}, stderr: stderr}
	addr := os.Getenv("HOTKERNEL_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	fs.StringVar(&c.addr, "addr", addr, "daemon `URL` (default $HOTKERNEL_ADDR or "+defaultAddr+")")
	fs.StringVar(&c.token, "token", "", "bearer `token` (default $HOTKERNEL_TOKEN)")
	return c
}

// errReported is returned once an error has been printed.
var errReported = errors.New("reported")

// do sends one request and returns the response when its status is 2xx.
// Otherwise it prints why (the daemon unreachable, or the server's JSON
// error) and returns errReported.
func (c *client) do(method, path string, hdr map[string]string, body io.Reader) (*http.Response, error) {
	base := strings.TrimRight(c.addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		fmt.Fprintf(c.stderr, "hotkernel %s: bad --addr %q: %v\n", c.cmd, c.addr, err)
		return nil, errReported
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	token := c.token
	if token == "" {
		token = os.Getenv("HOTKERNEL_TOKEN")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		fmt.Fprintf(c.stderr, "hotkernel %s: cannot reach the daemon at %s: %v\n", c.cmd, base, err)
		fmt.Fprintf(c.stderr, "  start one with \"hotkernel serve --listen %s\", or point --addr (or HOTKERNEL_ADDR) at a running one\n", hostOf(base))
		return nil, errReported
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	c.printError(resp.Status, data)
	return nil, errReported
}

// hostOf returns the host:port of a URL, or the URL when it has none.
func hostOf(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return u
}

// printError prints an error reply: the server's JSON error with its code
// and the validator's findings, or the body as it came.
func (c *client) printError(status string, data []byte) {
	var e struct {
		Error  string `json:"error"`
		Code   string `json:"code"`
		Detail []struct {
			File   string `json:"file"`
			Line   int    `json:"line"`
			Offset *int64 `json:"offset"`
			Reason string `json:"reason"`
		} `json:"detail"`
	}
	if json.Unmarshal(data, &e) != nil || e.Error == "" {
		fmt.Fprintf(c.stderr, "hotkernel %s: HTTP %s: %s\n", c.cmd, status, bytes.TrimSpace(data))
		return
	}
	fmt.Fprintf(c.stderr, "hotkernel %s: HTTP %s (%s): %s\n", c.cmd, status, e.Code, e.Error)
	for _, d := range e.Detail {
		where := d.File
		switch {
		case d.Line > 0:
			where += ":" + strconv.Itoa(d.Line)
		case d.Offset != nil:
			where += fmt.Sprintf(": byte %d", *d.Offset)
		}
		fmt.Fprintf(c.stderr, "  %s: %s\n", where, d.Reason)
	}
}

// parseClient parses a client command with exactly want positional
// arguments.
func parseClient(fs *flag.FlagSet, args []string, want int, stderr io.Writer) ([]string, int, bool) {
	rest, err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil, exitOK, false
	case err != nil:
		return nil, exitUsage, false
	case len(rest) != want:
		fmt.Fprintf(stderr, "hotkernel %s: want %d argument(s), got %d\n", fs.Name(), want, len(rest))
		fs.Usage()
		return nil, exitUsage, false
	}
	return rest, exitOK, true
}

// runStatus implements "hotkernel status".
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status", "status [--json] [--addr URL] [--token T]", stderr)
	c := clientFlags(fs, stderr)
	asJSON := fs.Bool("json", false, "print the daemon's JSON reply")
	if _, exit, ok := parseClient(fs, args, 0, stderr); !ok {
		return exit
	}
	resp, err := c.do("GET", "/v1/kernels", nil, nil)
	if err != nil {
		return exitFailure
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Fprintf(stderr, "hotkernel status: reading the reply: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		stdout.Write(data)
		return exitOK
	}
	var list struct {
		Kernels []server.KernelInfo `json:"kernels"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		fmt.Fprintf(stderr, "hotkernel status: bad reply: %v\n", err)
		return exitFailure
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tVERSION\tSTATE\tQUEUE\tPROCESSED\tFAILED\tSHA256")
	for _, k := range list.Kernels {
		fmt.Fprintf(tw, "%s\tv%d\t%s\t%d\t%d\t%d\t%.12s\n", k.ID, k.Version, k.State, k.QueueDepth, k.Processed, k.DeadLetters, k.SHA256)
	}
	tw.Flush()
	if len(list.Kernels) == 0 {
		fmt.Fprintln(stdout, "(no kernels)")
	}
	return exitOK
}

// reloadResult is the part of a reload's Result the client prints.
type reloadResult struct {
	Kernel     string         `json:"kernel"`
	OldVersion uint64         `json:"old_version"`
	NewVersion uint64         `json:"new_version"`
	Active     uint64         `json:"active"`
	Attempts   int            `json:"attempts"`
	Phases     map[string]dns `json:"phases"`
	Pause      dns            `json:"pause"`
	Health     int            `json:"health_messages"`
	Cutoff     uint64         `json:"cutoff"`
	StateBytes int            `json:"checkpoint_bytes"`
	Preserved  bool           `json:"state_preserved"`
	Migrated   bool           `json:"migrated"`
	RolledBack bool           `json:"rolled_back"`
	Error      string         `json:"error"`
	Code       string         `json:"code"`
}

// dns is a duration as the API writes it.
type dns struct {
	NS int64 `json:"ns"`
}

func (d dns) String() string { return fmtDur(time.Duration(d.NS)) }

// printResult prints a reload's or rollback's outcome and returns the
// exit code.
func printResult(w io.Writer, what string, r *reloadResult) int {
	if r.Pause.NS > 0 {
		how := "copied"
		switch {
		case r.Migrated:
			how = "migrated"
		case !r.Preserved:
			how = "not carried over"
		}
		fmt.Fprintf(w, "  %-14s %10s   (state %d bytes %s; cut-off at message %d)\n", "pause", r.Pause, r.StateBytes, how, r.Cutoff)
	}
	if h, ok := r.Phases["health"]; ok && h.NS > 0 {
		fmt.Fprintf(w, "  %-14s %10s   (%d messages)\n", "health", h, r.Health)
	}
	total := r.Phases["total"]
	if r.Error != "" {
		if r.RolledBack {
			fmt.Fprintf(w, "%s %s: v%d -> v%d rolled back to v%d after %s: %s\n", what, r.Kernel, r.OldVersion, r.NewVersion, r.Active, total, r.Error)
		} else {
			fmt.Fprintf(w, "%s %s: v%d -> v%d failed after %s; v%d serving: %s\n", what, r.Kernel, r.OldVersion, r.NewVersion, total, r.Active, r.Error)
		}
		return exitFailure
	}
	fmt.Fprintf(w, "%s %s: v%d -> v%d completed in %s (%d attempt(s)); v%d serving\n", what, r.Kernel, r.OldVersion, r.NewVersion, total, r.Attempts, r.Active)
	return exitOK
}

// runReload implements "hotkernel reload".
func runReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("reload", "reload ID (--version V | --file F [--format wasm] [--entry E]) [--json] [--addr URL] [--token T]", stderr)
	c := clientFlags(fs, stderr)
	ver := fs.Uint64("version", 0, "repository `version` to load")
	file := fs.String("file", "", "artifact `file` to upload instead")
	format := fs.String("format", "wasm", "`format` of --file")
	entry := fs.String("entry", "", "`entry` point of --file (default hk_process for wasm)")
	asJSON := fs.Bool("json", false, "print the Result as JSON instead of the phases and a summary")
	pos, exit, ok := parseClient(fs, args, 1, stderr)
	if !ok {
		return exit
	}
	id := pos[0]
	hdr := map[string]string{"Accept": "application/x-ndjson"}
	path := "/v1/kernels/" + url.PathEscape(id) + "/reload"
	var body io.Reader
	switch {
	case (*ver == 0) == (*file == ""):
		fmt.Fprintln(stderr, "hotkernel reload: give exactly one of --version and --file")
		return exitUsage
	case *ver != 0:
		hdr["Content-Type"] = "application/json"
		body = strings.NewReader(fmt.Sprintf(`{"version": %d}`, *ver))
	default:
		data, err := os.ReadFile(*file)
		if err != nil {
			fmt.Fprintf(stderr, "hotkernel reload: %v\n", err)
			return exitUsage
		}
		body = bytes.NewReader(data)
		if *format == "wasm" && *entry == "" {
			hdr["Content-Type"] = "application/wasm"
		} else {
			hdr["Content-Type"] = "application/octet-stream"
			q := url.Values{"format": {*format}}
			if *entry != "" {
				q.Set("entry", *entry)
			}
			path += "?" + q.Encode()
		}
	}
	resp, err := c.do("POST", path, hdr, body)
	if err != nil {
		return exitFailure
	}
	defer resp.Body.Close()
	var res *reloadResult
	var raw json.RawMessage
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/x-ndjson") {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Phase  string          `json:"phase"`
				Took   dns             `json:"took"`
				Result json.RawMessage `json:"result"`
				Error  string          `json:"error"`
				Code   string          `json:"code"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				fmt.Fprintf(stderr, "hotkernel reload: bad reply line %q: %v\n", sc.Text(), err)
				return exitFailure
			}
			switch {
			case line.Phase != "":
				if !*asJSON {
					fmt.Fprintf(stdout, "  %-14s %10s\n", line.Phase, line.Took)
				}
			case line.Result != nil:
				raw = line.Result
			case line.Error != "":
				fmt.Fprintf(stderr, "hotkernel reload: %s (%s)\n", line.Error, line.Code)
				return exitFailure
			}
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintf(stderr, "hotkernel reload: reading the reply: %v\n", err)
			return exitFailure
		}
	} else if raw, err = io.ReadAll(resp.Body); err != nil {
		fmt.Fprintf(stderr, "hotkernel reload: reading the reply: %v\n", err)
		return exitFailure
	}
	if raw == nil {
		fmt.Fprintln(stderr, "hotkernel reload: the reply ended without a result")
		return exitFailure
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		fmt.Fprintf(stderr, "hotkernel reload: bad result: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		return printRaw(stdout, raw, res)
	}
	return printResult(stdout, "reload", res)
}

// printRaw prints a reply's JSON as it came, and exits 1 when the Result
// reports an error.
func printRaw(stdout io.Writer, raw []byte, res *reloadResult) int {
	stdout.Write(append(bytes.TrimSpace(raw), '\n'))
	if res.Error != "" {
		return exitFailure
	}
	return exitOK
}

// runRollback implements "hotkernel rollback".
func runRollback(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("rollback", "rollback ID [--to V] [--json] [--addr URL] [--token T]", stderr)
	c := clientFlags(fs, stderr)
	to := fs.Uint64("to", 0, "code `version` to go back to (default: the one before the current)")
	asJSON := fs.Bool("json", false, "print the Result as JSON")
	pos, exit, ok := parseClient(fs, args, 1, stderr)
	if !ok {
		return exit
	}
	var body io.Reader = http.NoBody
	if *to != 0 {
		body = strings.NewReader(fmt.Sprintf(`{"to": %d}`, *to))
	}
	resp, err := c.do("POST", "/v1/kernels/"+url.PathEscape(pos[0])+"/rollback", map[string]string{"Content-Type": "application/json"}, body)
	if err != nil {
		return exitFailure
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Fprintf(stderr, "hotkernel rollback: reading the reply: %v\n", err)
		return exitFailure
	}
	var res reloadResult
	if err := json.Unmarshal(raw, &res); err != nil {
		fmt.Fprintf(stderr, "hotkernel rollback: bad reply: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		return printRaw(stdout, raw, &res)
	}
	for _, p := range []string{"checkpoint", "swap", "restore"} {
		if d, ok := res.Phases[p]; ok {
			fmt.Fprintf(stdout, "  %-14s %10s\n", p, d)
		}
	}
	return printResult(stdout, "rollback", &res)
}

// runSend implements "hotkernel send".
func runSend(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("send", "send ID [--encoding hex|base64] [--batch N] [--json] [--addr URL] [--token T] < messages", stderr)
	c := clientFlags(fs, stderr)
	enc := fs.String("encoding", "hex", "encoding of the messages on stdin (one a line) and of the outputs printed: hex or base64")
	batch := fs.Int("batch", 1000, "messages per request")
	asJSON := fs.Bool("json", false, "print each reply as a line of JSON")
	pos, exit, ok := parseClient(fs, args, 1, stderr)
	if !ok {
		return exit
	}
	var decode func(string) ([]byte, error)
	var encode func([]byte) string
	switch *enc {
	case "hex":
		decode, encode = hex.DecodeString, hex.EncodeToString
	case "base64":
		decode, encode = base64.StdEncoding.DecodeString, base64.StdEncoding.EncodeToString
	default:
		fmt.Fprintf(stderr, "hotkernel send: --encoding must be hex or base64, not %q\n", *enc)
		return exitUsage
	}
	if *batch < 1 {
		fmt.Fprintln(stderr, "hotkernel send: --batch must be positive")
		return exitUsage
	}
	path := "/v1/kernels/" + url.PathEscape(pos[0]) + "/messages"
	var msgs [][]byte
	flush := func() bool {
		if len(msgs) == 0 {
			return true
		}
		body, _ := json.Marshal(map[string]any{"messages": msgs})
		msgs = msgs[:0]
		resp, err := c.do("POST", path, map[string]string{"Content-Type": "application/json"}, bytes.NewReader(body))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		var r struct {
			FirstSeq uint64 `json:"first_seq"`
			Outputs  []struct {
				Version uint64 `json:"version"`
				Data    []byte `json:"data"`
			} `json:"outputs"`
			Dropped int `json:"dropped"`
		}
		if err == nil {
			err = json.Unmarshal(raw, &r)
		}
		if err != nil {
			fmt.Fprintf(stderr, "hotkernel send: bad reply: %v\n", err)
			return false
		}
		if *asJSON {
			stdout.Write(append(bytes.TrimSpace(raw), '\n'))
			return true
		}
		for _, o := range r.Outputs {
			fmt.Fprintf(stdout, "v%d %s\n", o.Version, encode(o.Data))
		}
		if r.Dropped > 0 {
			fmt.Fprintf(stderr, "hotkernel send: %d outputs dropped by the daemon (over its output limit)\n", r.Dropped)
		}
		return true
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		b, err := decode(line)
		if err != nil {
			fmt.Fprintf(stderr, "hotkernel send: stdin line %d: not %s: %v\n", n, *enc, err)
			return exitUsage
		}
		msgs = append(msgs, b)
		if len(msgs) == *batch && !flush() {
			return exitFailure
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(stderr, "hotkernel send: reading stdin: %v\n", err)
		return exitFailure
	}
	if !flush() {
		return exitFailure
	}
	return exitOK
}
