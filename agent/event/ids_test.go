package event

import (
	"strings"
	"testing"
)

func TestErrnoName(t *testing.T) {
	for ret, want := range map[int64]string{-13: "EACCES", -2: "ENOENT", -111: "ECONNREFUSED", -1: "EPERM", 0: "", 3: "", -4000: "", -4096: ""} {
		if got := ErrnoName(ret); got != want {
			t.Errorf("ErrnoName(%d) = %q, want %q", ret, got, want)
		}
	}
}

// TestLoginUIDInJSON: an unset login uid is absent, root's (0) is written.
func TestLoginUIDInJSON(t *testing.T) {
	for auid, want := range map[AUID]string{AUIDUnset: "", 0: `"auid":0,`, 1000: `"auid":1000,`} {
		b, err := (&Event{Kind: KindExec, Process: Process{PID: 1, LoginUID: auid}}).AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), `"auid"`); got != (want != "") || !strings.Contains(string(b), want) {
			t.Errorf("auid %d: JSON %s, want %q", uint32(auid), b, want)
		}
	}
}
