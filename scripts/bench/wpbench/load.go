package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed c/wpload.c
var wploadSource []byte

// compileLoad builds the C workloads into dir.
func compileLoad(dir string) (string, error) {
	src := filepath.Join(dir, "wpload.c")
	if err := os.WriteFile(src, wploadSource, 0o644); err != nil {
		return "", fmt.Errorf("writing wpload.c: %w", err)
	}
	bin := filepath.Join(dir, "wpload")
	out, err := exec.Command("gcc", "-O2", "-Wall", "-pthread", "-o", bin, src).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("compiling wpload.c with gcc: %w\n%s", err, out)
	}
	return bin, nil
}

// workloads, in the order of the report. unmonitored marks the ones that
// make only syscalls Watchpost does not hook.
var workloads = []struct {
	name, what  string
	unmonitored bool
}{
	{"open_close", "open(O_RDONLY) + close of a regular file", false},
	{"stat", "stat() of a file (not hooked by Watchpost)", true},
	{"getppid", "getppid() (not hooked by Watchpost)", true},
	{"fork_exec", "fork + execve(/bin/true) + waitpid", false},
	{"tcp_connect", "loopback TCP connect + accept + close", false},
	{"tcp_poll", "loopback request/response, 12-byte request, 29-byte answer (Modbus/TCP-like), send/recv", false},
	{"file_write", "4 KiB write()s, file reopened with O_TRUNC every 1 MiB", false},
}

// sample is one run of a workload.
type sample struct {
	Iters int64
	Wall  time.Duration
	CPU   time.Duration
}

func (s sample) cpuPerOp() float64  { return float64(s.CPU) / float64(s.Iters) }
func (s sample) wallPerOp() float64 { return float64(s.Wall) / float64(s.Iters) }

// runWorkload runs one workload to completion and parses its line.
func runWorkload(ctx context.Context, o *options, name string, iters int64) (sample, error) {
	dir := filepath.Join(o.workDir, "load")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sample{}, err
	}
	cmd := exec.CommandContext(ctx, o.loadPath, name, strconv.FormatInt(iters, 10), dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return sample{}, fmt.Errorf("workload %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	kv := parseKV(string(out))
	s := sample{Iters: kv["iters"], Wall: time.Duration(kv["wall_ns"]), CPU: time.Duration(kv["cpu_ns"])}
	if s.Iters == 0 || s.Wall == 0 {
		return s, fmt.Errorf("workload %s: unexpected output %q", name, out)
	}
	return s, nil
}

// Generators: genOpen opens and closes a regular file (one file_open event
// each, with its path resolved in the kernel); genMissing opens a file that
// does not exist (one file_open event with the name as given, no dentry
// walk): a cheap event, to test the ring and the reader rather than the
// producer's cost; genCred calls setresuid(-1, -1, -1), a cred_change
// event, which is submitted with a forced wakeup (urgent).
const (
	genOpen    = "open"
	genMissing = "enoent"
	genCred    = "cred"
)

// generate runs a generator at rate for d with threads.
func generate(ctx context.Context, o *options, kind string, rate float64, d time.Duration, threads int) (ops int64, wall time.Duration, err error) {
	dir := filepath.Join(o.workDir, "gen")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, 0, err
	}
	cmd := exec.CommandContext(ctx, o.loadPath, "gen", strconv.FormatFloat(rate, 'f', 0, 64),
		strconv.FormatFloat(d.Seconds(), 'f', 3, 64), strconv.Itoa(threads), dir, kind)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("generator at %.0f/s: %w: %s", rate, err, strings.TrimSpace(stderr.String()))
	}
	kv := parseKV(string(out))
	return kv["ops"], time.Duration(kv["wall_ns"]), nil
}

func parseKV(s string) map[string]int64 {
	m := map[string]int64{}
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err == nil {
			m[k] = n
		}
	}
	return m
}
