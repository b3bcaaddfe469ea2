package code

import (
	"fmt"
	"slices"
	"strings"
)

// The text formats PTX, WGSL and MSL share one C-like tokenizer. Each
// language picks its differences through a lexConfig: which comments
// nest, whether '…' is a character literal, whether '#' starts a
// preprocessor line, and which extra bytes may appear in identifiers.
//
// The tokenizer runs in one pass over the text, never backtracks, and
// keeps its work and memory linear in the input, whatever it holds.

// tokKind classifies a token.
type tokKind uint8

const (
	tokIdent   tokKind = iota + 1 // identifier, keyword, PTX directive (.entry) or register (%r1)
	tokNumber                     // numeric literal, with its suffixes
	tokString                     // "…" literal, quotes included
	tokChar                       // '…' literal, quotes included (MSL)
	tokPunct                      // one byte of punctuation
	tokPreproc                    // a whole preprocessor line, continuations included (MSL)
)

// token is one lexical element. text is a slice of the source.
type token struct {
	kind tokKind
	text string
	line int // 1-based line of the token's first byte
}

// is reports whether t is the punctuation or identifier s.
func (t token) is(s string) bool {
	return (t.kind == tokPunct || t.kind == tokIdent) && t.text == s
}

// lexConfig selects a language's lexical rules.
type lexConfig struct {
	// nestedComments makes /* */ comments nest (WGSL).
	nestedComments bool
	// charLiterals makes '…' a character literal and lets ' separate
	// digits inside numbers (C++14, so MSL).
	charLiterals bool
	// preprocessor makes a line whose first non-blank byte is '#' one
	// tokPreproc token (MSL).
	preprocessor bool
	// identStart and identCont are the bytes beyond letters, digits, '_'
	// and non-ASCII bytes that may start or continue an identifier.
	identStart, identCont string
}

var (
	// PTX: directives (.entry), registers (%r1), labels ($L__BB0_1) and
	// dotted instructions (ld.param.u64) are single identifiers.
	ptxLex = lexConfig{identStart: ".%$", identCont: ".$"}
	// WGSL: block comments nest; there are no string or character literals.
	wgslLex = lexConfig{nestedComments: true}
	// MSL: C++14 with the preprocessor.
	mslLex = lexConfig{charLiterals: true, preprocessor: true}
)

// lexError is a tokenizer failure at a line.
type lexError struct {
	line   int
	reason string
}

// lex splits src into tokens, dropping whitespace and comments. It fails
// on an unterminated comment, string or character literal, giving the
// line where that one starts.
func lex(src string, cfg *lexConfig) ([]token, *lexError) {
	l := lexer{src: src, cfg: cfg, line: 1, lineStart: true}
	// A modest guess at the token count; append grows it when short.
	l.toks = make([]token, 0, len(src)/16+1)
	if err := l.run(); err != nil {
		return nil, err
	}
	return l.toks, nil
}

type lexer struct {
	src       string
	cfg       *lexConfig
	pos       int
	line      int
	lineStart bool // only blanks since the last newline
	toks      []token
}

func (l *lexer) emit(kind tokKind, start, line int) {
	l.toks = append(l.toks, token{kind: kind, text: l.src[start:l.pos], line: line})
	l.lineStart = false
}

func (l *lexer) run() *lexError {
	src := l.src
	for l.pos < len(src) {
		c := src[l.pos]
		switch {
		case c == '\n':
			l.line++
			l.pos++
			l.lineStart = true
		case c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			l.pos++
		case c == '/' && l.peek(1) == '/':
			l.skipLine()
		case c == '/' && l.peek(1) == '*':
			if err := l.skipBlockComment(); err != nil {
				return err
			}
		case c == '#' && l.cfg.preprocessor && l.lineStart:
			if err := l.preprocessorLine(); err != nil {
				return err
			}
		case c == '"':
			if err := l.quoted('"', tokString, "string literal"); err != nil {
				return err
			}
		case c == '\'' && l.cfg.charLiterals:
			if err := l.quoted('\'', tokChar, "character literal"); err != nil {
				return err
			}
		case isDigit(c) || c == '.' && isDigit(l.peek(1)):
			l.number()
		case l.identStart(c):
			start := l.pos
			l.pos++
			for l.pos < len(src) && l.identCont(src[l.pos]) {
				l.pos++
			}
			l.emit(tokIdent, start, l.line)
		default:
			start := l.pos
			l.pos++
			l.emit(tokPunct, start, l.line)
		}
	}
	return nil
}

// peek returns the byte n past the current one, or 0 past the end.
func (l *lexer) peek(n int) byte {
	if l.pos+n < len(l.src) {
		return l.src[l.pos+n]
	}
	return 0
}

func (l *lexer) identStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 ||
		strings.IndexByte(l.cfg.identStart, c) >= 0
}

func (l *lexer) identCont(c byte) bool {
	return isIdentByte(c) || c >= 0x80 || strings.IndexByte(l.cfg.identCont, c) >= 0
}

// skipLine moves to the newline that ends the current line.
func (l *lexer) skipLine() {
	if i := strings.IndexByte(l.src[l.pos:], '\n'); i >= 0 {
		l.pos += i
	} else {
		l.pos = len(l.src)
	}
}

// skipBlockComment skips a /* */ comment, nested ones too when the
// language nests them.
func (l *lexer) skipBlockComment() *lexError {
	startLine := l.line
	depth := 0
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == '\n':
			l.line++
			l.pos++
		case c == '/' && l.peek(1) == '*' && (depth == 0 || l.cfg.nestedComments):
			depth++
			l.pos += 2
		case c == '*' && l.peek(1) == '/':
			depth--
			l.pos += 2
			if depth == 0 {
				return nil
			}
		default:
			l.pos++
		}
	}
	return &lexError{startLine, "unterminated /* comment opened here"}
}

// quoted reads a string or character literal. A backslash escapes the next
// byte; a backslash before a newline continues the literal on the next
// line, anything else ends it at the line's end.
func (l *lexer) quoted(q byte, kind tokKind, what string) *lexError {
	start, line := l.pos, l.line
	l.pos++
	for l.pos < len(l.src) {
		switch c := l.src[l.pos]; c {
		case q:
			l.pos++
			l.emit(kind, start, line)
			return nil
		case '\n':
			return &lexError{line, fmt.Sprintf("unterminated %s opened here", what)}
		case '\\':
			l.pos++
			if l.pos < len(l.src) {
				if l.src[l.pos] == '\n' {
					l.line++
				}
				l.pos++
			}
		default:
			l.pos++
		}
	}
	return &lexError{line, fmt.Sprintf("unterminated %s opened here", what)}
}

// number reads a numeric literal in the manner of a C preprocessing
// number: digits, letters, '_', '.', a sign right after an exponent letter
// (e, E, p, P), and, for C++, a ' between digits.
func (l *lexer) number() {
	start := l.pos
	l.pos++
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		prev := l.src[l.pos-1]
		switch {
		case isIdentByte(c) || c == '.':
		case (c == '+' || c == '-') && (prev == 'e' || prev == 'E' || prev == 'p' || prev == 'P'):
		case c == '\'' && l.cfg.charLiterals && isIdentByte(l.peek(1)):
		default:
			l.emit(tokNumber, start, l.line)
			return
		}
		l.pos++
	}
	l.emit(tokNumber, start, l.line)
}

// preprocessorLine reads a '#' line up to its end, following backslash
// continuations and skipping comments and literals inside it, so that a
// '/*' or '"' in the directive cannot swallow what follows.
func (l *lexer) preprocessorLine() *lexError {
	start, line := l.pos, l.line
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == '\n':
			l.emit(tokPreproc, start, line)
			return nil
		case c == '\\' && l.peek(1) == '\n':
			l.line++
			l.pos += 2
		case c == '\\' && l.peek(1) == '\r' && l.peek(2) == '\n':
			l.line++
			l.pos += 3
		case c == '/' && l.peek(1) == '/':
			l.skipLine()
		case c == '/' && l.peek(1) == '*':
			if err := l.skipBlockComment(); err != nil {
				return err
			}
		case c == '"' || c == '\'':
			// <…> and "…" header names, and literals in macro bodies.
			// Tolerate an unpaired quote, as in #error don't: the line ends
			// the directive whatever it holds.
			l.pos++
			for l.pos < len(l.src) && l.src[l.pos] != c && l.src[l.pos] != '\n' {
				if l.src[l.pos] == '\\' && l.pos+1 < len(l.src) && l.src[l.pos+1] != '\n' {
					l.pos++
				}
				l.pos++
			}
			if l.pos < len(l.src) && l.src[l.pos] == c {
				l.pos++
			}
		default:
			l.pos++
		}
	}
	l.emit(tokPreproc, start, line)
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// delimiters pairs the brackets (), [] and {} of toks. It returns, for
// each token index, the index of its partner, or -1 for a token that is
// not a bracket. An unclosed opener is reported at the line where it
// opens, a stray closer at its own line.
func delimiters(toks []token) ([]int, *lexError) {
	match := make([]int, len(toks))
	var stack []int
	var open [256]int // how many of each opener the stack holds
	for i, t := range toks {
		match[i] = -1
		if t.kind != tokPunct || len(t.text) != 1 {
			continue
		}
		switch c := t.text[0]; c {
		case '(', '[', '{':
			stack = append(stack, i)
			open[c]++
		case ')', ']', '}':
			want := openerOf(c)
			if len(stack) == 0 {
				return nil, &lexError{t.line, fmt.Sprintf("unbalanced '%c' has no matching '%c'", c, want)}
			}
			top := stack[len(stack)-1]
			if o := toks[top]; o.text[0] != want {
				// When an outer opener fits this closer, the inner one
				// was left open; otherwise the closer is the stray one.
				if open[want] > 0 {
					return nil, &lexError{o.line, fmt.Sprintf("unbalanced '%s' opened here is never closed (found '%c' at line %d)", o.text, c, t.line)}
				}
				return nil, &lexError{t.line, fmt.Sprintf("unbalanced '%c' has no matching '%c' (the innermost open bracket is '%s' at line %d)", c, want, o.text, o.line)}
			}
			stack = stack[:len(stack)-1]
			open[want]--
			match[top], match[i] = i, top
		}
	}
	if len(stack) > 0 {
		o := toks[stack[len(stack)-1]]
		return nil, &lexError{o.line, fmt.Sprintf("unbalanced '%s' opened here is never closed", o.text)}
	}
	return match, nil
}

func openerOf(c byte) byte {
	switch c {
	case ')':
		return '('
	case ']':
		return '['
	}
	return '{'
}

// tokenize runs lex and delimiters over b and turns their failures into an
// *Error of format f.
func tokenize(name string, f Format, b []byte, cfg *lexConfig) ([]token, []int, error) {
	toks, lerr := lex(string(b), cfg)
	if lerr != nil {
		return nil, nil, lineErr(name, f, lerr.line, ErrMalformed, "%s", lerr.reason)
	}
	match, lerr := delimiters(toks)
	if lerr != nil {
		return nil, nil, lineErr(name, f, lerr.line, ErrMalformed, "%s", lerr.reason)
	}
	return toks, match, nil
}

// maxErrors bounds how many structural errors one artifact reports.
const maxErrors = 20

// errorSet collects the structural errors of one artifact.
type errorSet struct {
	name string
	f    Format
	list ErrorList
}

// add records an ErrMalformed error at line, or an error of another kind
// through addKind. Past maxErrors it records nothing more.
func (s *errorSet) add(line int, format string, args ...any) {
	s.addKind(line, ErrMalformed, format, args...)
}

func (s *errorSet) addKind(line int, kind error, format string, args ...any) {
	if len(s.list) < maxErrors {
		s.list = append(s.list, lineErr(s.name, s.f, line, kind, format, args...))
	}
}

// err returns nil, the single *Error, or the ErrorList in line order.
func (s *errorSet) err() error {
	slices.SortStableFunc(s.list, func(a, b *Error) int { return a.Line - b.Line })
	switch len(s.list) {
	case 0:
		return nil
	case 1:
		return s.list[0]
	}
	return s.list
}

// describeToken names t for an error message: its text, quoted and cut
// short, or "end of file" for the zero token.
func describeToken(t token) string {
	if t.kind == 0 {
		return "end of file"
	}
	s := t.text
	if t.kind == tokPreproc {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[:i]
		}
	}
	const max = 40
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xC0 == 0x80 { // keep UTF-8 whole
			cut--
		}
		s = s[:cut] + "…"
	}
	return fmt.Sprintf("%q", s)
}
