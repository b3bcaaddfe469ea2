package code

import (
	"strings"
)

// inspectSource checks generic source text. hotkernel does not parse the
// languages behind FormatSource, so the only structural facts it can check
// are that the text is UTF-8 (checked by Inspect) and that the requested
// entry is used as a function: the name as a whole identifier followed by
// "(", outside // and /* */ comments. With no entry requested there is
// nothing to find, which Inspect reports as ErrNoEntries.
func inspectSource(name string, b []byte, opts Options) (*Info, error) {
	info := &Info{}
	if opts.Entry == "" {
		return info, nil
	}
	text := stripCComments(string(b))
	line := 1
	for i := 0; i < len(text); i++ {
		if text[i] == '\n' {
			line++
			continue
		}
		if !strings.HasPrefix(text[i:], opts.Entry) || (i > 0 && isIdentByte(text[i-1])) {
			continue
		}
		j := i + len(opts.Entry)
		if j < len(text) && isIdentByte(text[j]) {
			continue
		}
		for j < len(text) && (text[j] == ' ' || text[j] == '\t' || text[j] == '\n' || text[j] == '\r') {
			j++
		}
		if j < len(text) && text[j] == '(' {
			info.Entries = append(info.Entries, Entry{Name: opts.Entry, Kind: "function", Line: line})
			return info, nil
		}
	}
	return info, nil
}

// stripCComments replaces the characters of // and /* */ comments with
// spaces, keeping newlines so that line numbers stay valid.
func stripCComments(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '/' && i+1 < len(b) && b[i+1] == '/':
			for i < len(b) && b[i] != '\n' {
				b[i] = ' '
				i++
			}
		case b[i] == '/' && i+1 < len(b) && b[i+1] == '*':
			b[i], b[i+1] = ' ', ' '
			i += 2
			for i < len(b) && !(b[i] == '*' && i+1 < len(b) && b[i+1] == '/') {
				if b[i] != '\n' {
					b[i] = ' '
				}
				i++
			}
			if i < len(b) {
				b[i], b[i+1] = ' ', ' '
				i++
			}
		}
	}
	return string(b)
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
