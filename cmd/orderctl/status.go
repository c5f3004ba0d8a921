package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// statusLine shows progress. On a terminal it redraws one line in place;
// anywhere else (a file, a pipe, a test) it writes a line at most every
// interval, so that logs stay readable.
type statusLine struct {
	w     io.Writer
	tty   bool
	every time.Duration
	last  time.Time
	text  string // the latest update, shown or not
	shown bool   // text is what the output shows last
}

func newStatusLine(w io.Writer, every time.Duration) *statusLine {
	return &statusLine{w: w, tty: isTerminal(w), every: every}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Update shows text, now on a terminal, else unless a line was written less
// than the interval ago.
func (l *statusLine) Update(text string) {
	l.text, l.shown = text, false
	if l.tty {
		fmt.Fprint(l.w, "\r\x1b[K"+text)
		l.shown = true
		return
	}
	if time.Since(l.last) >= l.every {
		l.flushLine()
	}
}

// Finish ends the status line, writing the latest update if the output does
// not show it yet.
func (l *statusLine) Finish() {
	switch {
	case l.tty && l.text != "":
		fmt.Fprintln(l.w)
	case !l.tty && !l.shown && l.text != "":
		l.flushLine()
	}
	l.text = ""
}

func (l *statusLine) flushLine() {
	fmt.Fprintln(l.w, l.text)
	l.last, l.shown = time.Now(), true
}
