package kernel

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Syscall tracepoints are found through tracefs. Many gateways do not mount
// it; the agent then mounts it for as long as it runs and unmounts it when
// the last sensor closes, leaving the host as it was.
var tracefsState struct {
	sync.Mutex
	users   int
	mounted bool
}

const tracefsPath = "/sys/kernel/tracing"

func tracefsReady() bool {
	for _, root := range []string{tracefsPath, "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(root + "/events"); err == nil {
			return true
		}
	}
	return false
}

// acquireTracefs makes sure tracefs is mounted.
func acquireTracefs() error {
	tracefsState.Lock()
	defer tracefsState.Unlock()
	tracefsState.users++
	if tracefsReady() {
		return nil
	}
	if err := unix.Mount("tracefs", tracefsPath, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		tracefsState.users--
		return fmt.Errorf("mounting tracefs at %s (needed for syscall tracepoints): %w", tracefsPath, err)
	}
	tracefsState.mounted = true
	return nil
}

// releaseTracefs unmounts tracefs when this process mounted it and no
// sensor needs it any more.
func releaseTracefs() error {
	tracefsState.Lock()
	defer tracefsState.Unlock()
	if tracefsState.users == 0 {
		return nil
	}
	tracefsState.users--
	if tracefsState.users > 0 || !tracefsState.mounted {
		return nil
	}
	tracefsState.mounted = false
	if err := unix.Unmount(tracefsPath, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmounting the tracefs the agent mounted: %w", err)
	}
	return nil
}
