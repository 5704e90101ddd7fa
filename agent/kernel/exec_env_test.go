package kernel

import (
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/watchpost/watchpost/agent/event"
	"github.com/watchpost/watchpost/agent/internal/privtest"
)

func TestExecEnvironmentIsCapturedAndClamped(t *testing.T) {
	eachArgsPath(t, func(t *testing.T, args func(*Config)) {
		h := startSensor(t, with(kinds(event.KindExec), args))
		long := "/tmp/" + strings.Repeat("x", 400) + ".so"
		tunables := "glibc.malloc.mxfast=0"
		// Listed variables after many others: the envp array is read, so
		// their place in the environment does not matter. A name given
		// twice keeps its first value, as getenv does, and the later one
		// is reported too: the dynamic loader uses the last LD_PRELOAD
		// (os/exec would deduplicate, so the helper is started with
		// ForkExec).
		var filler []string
		for i := 0; i < 100; i++ {
			filler = append(filler, "WP_FILLER_"+strconv.Itoa(i)+"="+strings.Repeat("v", 200))
		}
		env := append(append([]string{"PATH=/usr/sbin:/usr/bin", "WP_NOT_LISTED=1"}, filler...),
			privtest.HelperEnv+"=exit:0", "LD_PRELOAD="+long, "GLIBC_TUNABLES="+tunables, "LD_PRELOAD=")
		self := privtest.Self(t)
		pid, err := syscall.ForkExec(self, []string{self, "-test.run=^$"}, &syscall.ProcAttr{Dir: privtest.Dir(t), Env: env, Files: []uintptr{0, 1, 2}})
		if err != nil {
			t.Fatal(err)
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
			t.Fatalf("helper: %v, status %v", err, ws)
		}
		ex := h.waitFor("exec", isKind(event.KindExec, pid))
		want := map[string]string{
			"PATH":           "/usr/sbin:/usr/bin",
			"LD_PRELOAD":     long[:DefaultEnv().MaxValueBytes],
			"GLIBC_TUNABLES": tunables,
		}
		if diff := cmp.Diff(want, ex.Exec.Env); diff != "" {
			t.Errorf("env (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"LD_PRELOAD="}, ex.Exec.EnvDuplicates); diff != "" {
			t.Errorf("env_duplicates (-want +got):\n%s", diff)
		}
		if !ex.Exec.EnvTruncated || ex.Exec.Envc != uint32(len(env)) {
			t.Errorf("env_truncated %v (want true: LD_PRELOAD was clamped), envc %d (want %d)", ex.Exec.EnvTruncated, ex.Exec.Envc, len(env))
		}
	})
}

func TestExecEnvironmentAllAndOff(t *testing.T) {
	privtest.Require(t)
	for _, mode := range []string{EnvAll, EnvOff} {
		t.Run(mode, func(t *testing.T) {
			h := startSensor(t, func(c *Config) {
				c.Kinds = []event.Kind{event.KindExec}
				c.Env.Mode = mode
			})
			cmd := helperCmd(t, "exit:0", privtest.Dir(t), "-test.run=^$")
			cmd.Env = []string{privtest.HelperEnv + "=exit:0", "PLANT_LINE=3", "EMPTY="}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helper: %v %s", err, out)
			}
			ex := h.waitFor("exec", isKind(event.KindExec, cmd.Process.Pid))
			var want map[string]string
			if mode == EnvAll {
				want = map[string]string{privtest.HelperEnv: "exit:0", "PLANT_LINE": "3", "EMPTY": ""}
			}
			if diff := cmp.Diff(want, ex.Exec.Env); diff != "" || ex.Exec.EnvTruncated {
				t.Errorf("env (-want +got):\n%s truncated %v", diff, ex.Exec.EnvTruncated)
			}
		})
	}
}
