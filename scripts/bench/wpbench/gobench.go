package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

type goBenchResult struct {
	Command string
	Output  string // the benchmark lines
	Elapsed time.Duration
}

// goBenchCommand is the testing.B overhead benchmarks of agent/kernel.
func goBenchCommand(short bool) (env []string, args []string) {
	benchtime, rounds := "1s", "5"
	if short {
		benchtime, rounds = "0.3s", "3"
	}
	return []string{"WATCHPOST_BENCH_ROUNDS=" + rounds},
		[]string{"test", "-run", "^$", "-bench", "^(BenchmarkOpenClose|BenchmarkTCPConnect)$", "-benchtime", benchtime, "-count", "1", "./agent/kernel/"}
}

func runGoBench(ctx context.Context, o *options) (*goBenchResult, error) {
	env, args := goBenchCommand(o.short)
	res := &goBenchResult{Command: strings.Join(env, " ") + " go " + strings.Join(args, " ")}
	progress("go benchmarks: %s", res.Command)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", res.Command, err, out.String())
	}
	res.Elapsed = time.Since(start)
	var keep []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			keep = append(keep, strings.Join(strings.Fields(line), " "))
		}
	}
	res.Output = strings.Join(keep, "\n")
	return res, nil
}
