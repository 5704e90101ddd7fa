package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// installedPackages lists the Debian packages in state "installed".
func installedPackages() (map[string]bool, error) {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n").Output()
	if err != nil {
		return nil, fmt.Errorf("listing installed packages with dpkg-query: %w", err)
	}
	m := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if name, status, ok := strings.Cut(line, " "); ok && status == "installed" {
			m[name] = true
		}
	}
	return m, nil
}

// ensurePackages installs the named Debian packages when they are missing
// and registers a cleanup that purges exactly the packages this call added
// (the tool and the dependencies it pulled in), unless keep is set. Daemons
// are not started by the installation (policy-rc.d).
func ensurePackages(ctx context.Context, o *options, cleanups *cleanupStack, names ...string) error {
	before, err := installedPackages()
	if err != nil {
		return err
	}
	var missing []string
	for _, n := range names {
		if !before[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\n# written by wpbench during a package installation\nexit 101\n"), 0o755); err != nil {
			return fmt.Errorf("writing %s: %w", policy, err)
		}
		defer os.Remove(policy)
	}
	progress("installing %s from Debian (purged again at the end)", strings.Join(missing, ", "))
	if err := aptGet(ctx, "update", "-q"); err != nil {
		return err
	}
	err = aptGet(ctx, append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)...)
	after, lerr := installedPackages()
	if lerr != nil {
		return lerr
	}
	var added []string
	for n := range after {
		if !before[n] {
			added = append(added, n)
		}
	}
	sort.Strings(added)
	if len(added) > 0 && !o.keepPackages {
		cleanups.push(func() error {
			progress("purging %s (installed by this run)", strings.Join(added, " "))
			return aptGet(context.Background(), append([]string{"purge", "-y", "-q"}, added...)...)
		})
	}
	if err != nil {
		return err
	}
	return nil
}

// aptGet runs apt-get, waiting for the dpkg lock when another installation
// holds it.
func aptGet(ctx context.Context, args ...string) error {
	full := append([]string{"-o", "DPkg::Lock::Timeout=600"}, args...)
	cmd := exec.CommandContext(ctx, "apt-get", full...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		tail := out.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, tail)
	}
	progress("apt-get %s: %s", args[0], time.Since(start).Round(time.Second))
	return nil
}
