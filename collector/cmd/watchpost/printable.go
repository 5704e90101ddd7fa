package main

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// printable makes a value an agent reported safe for a terminal: control
// characters (newlines, tabs, ANSI escape sequences, C1 controls), Unicode
// line separators and bidirectional overrides, and invalid UTF-8 are shown
// as Go-style escapes (\n, \x1b, \u202e). A hostile argv can then neither
// add rows to a table, nor move its columns, nor erase or recolour what was
// printed before it. --json prints the exact values.
func printable(s string) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if needsEscape(r, n) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case !needsEscape(r, n):
			b.WriteString(s[i : i+n])
		case r == utf8.RuneError:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}

func needsEscape(r rune, size int) bool {
	switch {
	case r == utf8.RuneError && size == 1:
		return true
	case unicode.IsControl(r): // C0, DEL, C1
		return true
	case r == '\u2028' || r == '\u2029': // line and paragraph separators
		return true
	case r == '\u200e' || r == '\u200f' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069'):
		return true // bidirectional marks, embeddings, overrides and isolates
	}
	return false
}

// row writes one table row: each field made printable, separated by tabs
// (the tabwriter's cells), ended by a newline.
func row(w io.Writer, fields ...any) {
	for i, f := range fields {
		if i > 0 {
			_, _ = io.WriteString(w, "\t")
		}
		var s string
		switch v := f.(type) {
		case string:
			s = v
		default:
			s = fmt.Sprint(v)
		}
		_, _ = io.WriteString(w, printable(s))
	}
	_, _ = io.WriteString(w, "\n")
}
