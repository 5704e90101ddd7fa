package vmtest

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// PackageResult is one test binary's run in a guest.
type PackageResult struct {
	Package  string
	ExitCode int // -1 when the END marker never came (crash, panic, timeout)
	Passed   []string
	Failed   []string
	Skipped  []string
	// Panicked is set when the binary printed a Go panic.
	Panicked bool
}

// ParseOutput splits the guest's ttyS1 stream into per-package results using the
// markers /init writes around each binary, and counts `go test -v` verdict lines
// (subtests included).
func ParseOutput(out []byte) []PackageResult {
	var res []PackageResult
	var cur *PackageResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if p, ok := strings.CutPrefix(line, beginMarker); ok {
			res = append(res, PackageResult{Package: strings.TrimSpace(p), ExitCode: -1})
			cur = &res[len(res)-1]
			continue
		}
		if rest, ok := strings.CutPrefix(line, endMarker); ok && cur != nil {
			if i := strings.LastIndex(rest, " rc="); i >= 0 {
				if n, err := strconv.Atoi(rest[i+4:]); err == nil {
					cur.ExitCode = n
				}
			}
			cur = nil
			continue
		}
		if cur == nil {
			continue
		}
		if strings.HasPrefix(line, "panic: ") {
			cur.Panicked = true
		}
		if m := verdictRE.FindStringSubmatch(line); m != nil {
			switch m[1] {
			case "PASS":
				cur.Passed = append(cur.Passed, m[2])
			case "FAIL":
				cur.Failed = append(cur.Failed, m[2])
			case "SKIP":
				cur.Skipped = append(cur.Skipped, m[2])
			}
		}
	}
	return res
}

var verdictRE = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)

// Status of one kernel in the matrix.
type Status string

const (
	StatusPass  Status = "PASS"
	StatusFail  Status = "FAIL"  // tests ran and some failed
	StatusError Status = "ERROR" // no exit status came back: boot failure, panic, timeout
)

// KernelResult is one kernel's line of the summary.
type KernelResult struct {
	Kernel   Kernel
	Status   Status
	Reason   string // for FAIL and ERROR: what went wrong, in a few words
	Packages []PackageResult
	Duration time.Duration
	Log      string // path of the full log
}

// Counts adds up the verdicts of every package.
func (r *KernelResult) Counts() (passed, failed, skipped int) {
	for _, p := range r.Packages {
		passed += len(p.Passed)
		failed += len(p.Failed)
		skipped += len(p.Skipped)
	}
	return
}

// Judge turns a guest's outcome into a KernelResult. want lists the packages the
// initramfs holds: one that never started counts as a failure.
func Judge(k Kernel, o Outcome, want []string) KernelResult {
	r := KernelResult{Kernel: k, Packages: ParseOutput(o.Output), Duration: o.Duration}
	started := map[string]bool{}
	var reasons []string
	for _, p := range r.Packages {
		started[p.Package] = true
		switch {
		case p.ExitCode == -1:
			reasons = append(reasons, p.Package+" did not finish")
		case p.ExitCode != 0 && len(p.Failed) > 0:
			reasons = append(reasons, fmt.Sprintf("%s: %s failed", p.Package, strings.Join(p.Failed, ", ")))
		case p.ExitCode != 0 && p.Panicked:
			reasons = append(reasons, p.Package+" panicked")
		case p.ExitCode != 0:
			reasons = append(reasons, fmt.Sprintf("%s exited %d", p.Package, p.ExitCode))
		}
	}
	for _, w := range want {
		if !started[w] && o.ExitCode != -1 {
			reasons = append(reasons, w+" never ran")
		}
	}
	switch {
	case o.ExitCode == -1:
		r.Status = StatusError
		why := "no exit status from the guest"
		switch {
		case o.TimedOut:
			why += ": timed out"
		case o.QemuErr != nil:
			why += ": " + o.QemuErr.Error()
		case bytes.Contains(o.Console, []byte("Kernel panic")):
			why += ": kernel panic"
		}
		r.Reason = strings.Join(append([]string{why}, reasons...), "; ")
	case o.ExitCode != 0 || len(reasons) > 0:
		r.Status = StatusFail
		r.Reason = strings.Join(reasons, "; ")
		if r.Reason == "" {
			r.Reason = fmt.Sprintf("guest exit status %d", o.ExitCode)
		}
	default:
		r.Status = StatusPass
	}
	return r
}

// Summary renders the results as a Markdown table, with notes under it.
func Summary(results []KernelResult, notes []string, total time.Duration) string {
	var b strings.Builder
	b.WriteString("| kernel | Debian package | version | uname -r | result | passed | failed | skipped | time |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		p, f, s := r.Counts()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %d | %d | %s |\n",
			r.Kernel.Name, r.Kernel.Package, r.Kernel.Version, r.Kernel.Release, r.Status, p, f, s, r.Duration.Round(time.Second))
	}
	fmt.Fprintf(&b, "\nWall time of the run: %s.\n", total.Round(time.Second))
	var problems []string
	for _, r := range results {
		if r.Status != StatusPass {
			problems = append(problems, fmt.Sprintf("- %s %s: %s (log: %s)", r.Kernel.Name, r.Status, r.Reason, r.Log))
		}
	}
	if len(problems) > 0 {
		b.WriteString("\nFailures:\n" + strings.Join(problems, "\n") + "\n")
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

// FailureExcerpts returns, for each failed top-level test, its output from "=== RUN"
// to "--- FAIL" (at most max lines, the last ones), and the tail of every package
// that did not finish or exited non-zero without a failed test (a panic, a timeout).
func FailureExcerpts(out []byte, max int) string {
	var b strings.Builder
	lines := strings.Split(strings.ReplaceAll(string(out), "\r", ""), "\n")
	clip := func(ls []string) []string {
		if len(ls) > max {
			return append([]string{fmt.Sprintf("[... %d lines ...]", len(ls)-max)}, ls[len(ls)-max:]...)
		}
		return ls
	}
	pkg, pkgStart := "", -1
	runStart := map[string]int{}
	failedHere := false
	for i, line := range lines {
		if p, ok := strings.CutPrefix(line, beginMarker); ok {
			pkg, pkgStart, failedHere = strings.TrimSpace(p), i+1, false
			runStart = map[string]int{}
			continue
		}
		if rest, ok := strings.CutPrefix(line, endMarker); ok {
			if !strings.HasSuffix(rest, " rc=0") && !failedHere && pkgStart >= 0 {
				fmt.Fprintf(&b, "%s (%s):\n%s\n", pkg, strings.TrimPrefix(rest[len(pkg):], " "), strings.Join(clip(lines[pkgStart:i]), "\n"))
			}
			pkgStart = -1
			continue
		}
		if name, ok := strings.CutPrefix(line, "=== RUN   "); ok && !strings.Contains(name, "/") {
			runStart[strings.TrimSpace(name)] = i
			continue
		}
		if name, ok := strings.CutPrefix(line, "--- FAIL: "); ok {
			name, _, _ = strings.Cut(name, " ")
			if s, ok := runStart[name]; ok {
				failedHere = true
				fmt.Fprintf(&b, "%s %s:\n%s\n", pkg, name, strings.Join(clip(lines[s:i+1]), "\n"))
			}
		}
	}
	if pkgStart >= 0 && pkgStart < len(lines) {
		fmt.Fprintf(&b, "%s (did not finish):\n%s\n", pkg, strings.Join(clip(lines[pkgStart:]), "\n"))
	}
	return b.String()
}
