package event

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/watchpost/watchpost/proto/limits"
)

// Truncation records a field the agent shortened to its limit (JSON
// "truncated": [{"field": "process.args", "entries": 1500, "bytes": 9000}]).
type Truncation = limits.Truncation

// Clamp shortens every string and list of ev to the limits of package
// proto/limits, keeping heads and tails (the last arguments, the last path
// components), and records each cut in ev.Truncated. A cut already
// recorded (by the process table, which clamps what it reads from /proc)
// keeps its original size. After Clamp the collector accepts the event as
// it is.
func (ev *Event) Clamp() {
	c := clamper{ev: ev}
	p := &ev.Process
	c.str("header.host", &ev.Host, limits.NameBytes)
	c.str("process.comm", &p.Comm, limits.NameBytes)
	c.path("process.exe", &p.Exe)
	c.list("process.args", &p.Args, limits.Args, limits.ArgBytes, limits.ArgsBytes)
	c.path("process.cwd", &p.Cwd)
	c.str("process.tty", &p.TTY, limits.NameBytes)
	c.str("process.container", &p.Container, limits.NameBytes)
	c.str("process.container_runtime", &p.ContainerRuntime, limits.NameBytes)
	c.str("process.container_image", &p.ContainerImage, limits.NameBytes)
	c.str("process.container_name", &p.ContainerName, limits.NameBytes)
	c.str("process.pod_name", &p.PodName, limits.NameBytes)
	c.str("process.pod_namespace", &p.PodNamespace, limits.NameBytes)
	if n := len(ev.Ancestry); n > limits.Ancestry {
		c.record("ancestry", uint32(n), 0)
		ev.Ancestry = ev.Ancestry[:limits.Ancestry]
	}
	for i := range ev.Ancestry {
		a, f := &ev.Ancestry[i], &ancestorFields[i]
		c.str(f[0], &a.Comm, limits.NameBytes)
		c.path(f[1], &a.Exe)
		c.list(f[2], &a.Args, limits.AncestorArgs, limits.AncestorArgsBytes, limits.AncestorArgsBytes)
	}
	if in := ev.Industrial; in != nil {
		c.str("industrial.protocol", &in.Protocol, limits.NameBytes)
		c.str("industrial.fieldbus", &in.Fieldbus, limits.NameBytes)
		c.path("industrial.device", &in.Device)
	}
	switch {
	case ev.Exec != nil:
		x := ev.Exec
		c.str("exec.exe_dev", &x.ExeDev, limits.NameBytes)
		c.env(x)
		c.list("exec.env_duplicates", &x.EnvDuplicates, limits.Env, limits.EnvVarBytes, limits.EnvBytes)
	case ev.File != nil:
		f := ev.File
		c.path("file.path", &f.Path)
		c.path("file.new_path", &f.NewPath)
		c.str("file.dev", &f.Dev, limits.NameBytes)
		c.str("file.rdev", &f.RDev, limits.NameBytes)
		c.str("file.dev_kind", &f.DevKind, limits.NameBytes)
		c.str("file.syscall", &f.Syscall, limits.NameBytes)
	case ev.Net != nil:
		n := ev.Net
		for _, s := range []struct {
			field string
			v     *string
		}{{"net.syscall", &n.Syscall}, {"net.family", &n.Family}, {"net.protocol", &n.Protocol}, {"net.sock_type", &n.SockType},
			{"net.src_addr", &n.SrcAddr}, {"net.dst_addr", &n.DstAddr}, {"net.direction", &n.Direction},
			{"net.state", &n.State}, {"net.interface", &n.Interface}, {"net.zone", &n.Zone}, {"net.peer_zone", &n.PeerZone}} {
			c.str(s.field, s.v, limits.NameBytes)
		}
	case ev.Interface != nil:
		n := ev.Interface
		for _, s := range []struct {
			field string
			v     *string
		}{{"net_interface.action", &n.Action}, {"net_interface.name", &n.Name}, {"net_interface.type", &n.Type},
			{"net_interface.mac", &n.MAC}, {"net_interface.oper_state", &n.OperState}, {"net_interface.zone", &n.Zone},
			{"net_interface.address", &n.Address}, {"net_interface.address_zone", &n.AddressZone},
			{"net_interface.previous_name", &n.PreviousName}} {
			c.str(s.field, s.v, limits.NameBytes)
		}
		c.list("net_interface.addresses", &n.Addresses, limits.Counters, limits.NameBytes, limits.ProgramsBytes)
		c.list("net_interface.changed", &n.Changed, limits.Counters, limits.NameBytes, limits.ProgramsBytes)
	case ev.Security != nil:
		s := ev.Security
		c.str("security.operation", &s.Operation, limits.NameBytes)
		c.str("security.target_comm", &s.TargetComm, limits.NameBytes)
		c.path("security.target_exe", &s.TargetExe)
		c.list("security.target_args", &s.TargetArgs, limits.AncestorArgs, limits.AncestorArgsBytes, limits.AncestorArgsBytes)
		c.str("security.name", &s.Name, limits.TextBytes)
		c.path("security.path", &s.Path)
		c.str("security.fs_type", &s.FSType, limits.NameBytes)
		c.str("security.params", &s.Params, limits.TextBytes)
	case ev.Health != nil:
		h := ev.Health
		c.str("health.version", &h.Version, limits.NameBytes)
		c.str("health.kernel", &h.Kernel, limits.NameBytes)
		c.str("health.capture_path", &h.CapturePath, limits.NameBytes)
		c.list("health.programs", &h.Programs, limits.Programs, limits.NameBytes, limits.ProgramsBytes)
		c.counters("health.counters", &h.Counters)
		if d := h.Detection; d != nil {
			c.list("health.detection.errors", &d.Errors, limits.Counters, limits.TextBytes, limits.ProgramsBytes)
			c.suppressed(d)
		}
	case ev.Alert != nil:
		a := ev.Alert
		for _, f := range []struct {
			field string
			v     *string
		}{{"alert.rule_id", &a.RuleID}, {"alert.title", &a.Title}, {"alert.level", &a.Level},
			{"alert.source", &a.Source}, {"alert.correlation", &a.Correlation}} {
			c.str(f.field, f.v, limits.NameBytes)
		}
		c.path("alert.cgroup", &a.Cgroup)
		c.list("alert.techniques", &a.Techniques, limits.Counters, limits.NameBytes, limits.ProgramsBytes)
		c.list("alert.tags", &a.Tags, limits.Counters, limits.NameBytes, limits.ProgramsBytes)
		if n := len(a.Matches); n > limits.AlertMatches {
			c.record("alert.matches", uint32(n), 0)
			a.Matches = a.Matches[:limits.AlertMatches]
		}
		for i := range a.Matches {
			f := "alert.matches[" + strconv.Itoa(i) + "]."
			c.str(f+"field", &a.Matches[i].Field, limits.NameBytes)
			c.str(f+"value", &a.Matches[i].Value, limits.AlertMatchBytes)
		}
		if n := len(a.Events); n > limits.AlertEvents {
			// The last events completed the match: they are kept.
			c.record("alert.events", uint32(n), 0)
			a.Events = a.Events[n-limits.AlertEvents:]
		}
	case ev.Namespace != nil:
		n := ev.Namespace
		c.str("namespace.operation", &n.Operation, limits.NameBytes)
		c.list("namespace.namespaces", &n.Namespaces, limits.Counters, limits.NameBytes, limits.ProgramsBytes)
		if len(n.Inodes) > limits.Counters {
			c.record("namespace.inodes", uint32(len(n.Inodes)), 0)
			keys := make([]string, 0, len(n.Inodes))
			for k := range n.Inodes {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			out := make(map[string]uint32, limits.Counters)
			for _, k := range keys[:limits.Counters] {
				out[k] = n.Inodes[k]
			}
			n.Inodes = out
		}
		for k, v := range n.Inodes {
			if len(k) > limits.NameBytes || !utf8.ValidString(k) {
				delete(n.Inodes, k)
				valid(&k)
				k, _ = limits.String(k, limits.NameBytes)
				n.Inodes[k] = v
			}
		}
	case ev.Gap != nil:
		c.str("gap.reason", &ev.Gap.Reason, limits.TextBytes)
		c.counters("gap.counters", &ev.Gap.Counters)
	case ev.Tamper != nil:
		t := ev.Tamper
		c.str("tamper.what", &t.What, limits.NameBytes)
		c.path("tamper.file", &t.File)
		c.str("tamper.action", &t.Action, limits.TextBytes)
		c.str("tamper.error", &t.Error, limits.TextBytes)
	}
}

// ancestorFields are the names of the ancestors' clamped fields, made once
// rather than for every event.
var ancestorFields = func() (t [limits.Ancestry][3]string) {
	for i := range t {
		f := "ancestry[" + strconv.Itoa(i) + "]."
		t[i] = [3]string{f + "comm", f + "exe", f + "args"}
	}
	return t
}()

type clamper struct{ ev *Event }

// record notes a cut unless one is already recorded for the field.
func (c clamper) record(field string, entries uint32, bytes uint64) {
	for _, t := range c.ev.Truncated {
		if t.Field == field {
			return
		}
	}
	c.ev.Truncated = append(c.ev.Truncated, Truncation{Field: field, Entries: entries, Bytes: bytes})
}

// valid replaces invalid UTF-8 (Linux paths and argv are bytes) with
// U+FFFD before anything is measured: proto3 strings must be valid UTF-8,
// and the replacement can make a string longer.
func valid(s *string) {
	if !utf8.ValidString(*s) {
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
}

func validAll(l []string) []string {
	for i := range l {
		if !utf8.ValidString(l[i]) {
			l = append([]string(nil), l...) // the slice may be shared with the process table
			for j := i; j < len(l); j++ {
				valid(&l[j])
			}
			break
		}
	}
	return l
}

func (c clamper) str(field string, s *string, max int) {
	valid(s)
	if v, cut := limits.String(*s, max); cut {
		c.record(field, 0, uint64(len(*s)))
		*s = v
	}
}

func (c clamper) path(field string, s *string) {
	valid(s)
	if v, cut := limits.Path(*s, limits.PathBytes); cut {
		c.record(field, 0, uint64(len(*s)))
		*s = v
	}
}

func (c clamper) list(field string, l *[]string, entries, entry, total int) {
	*l = validAll(*l)
	if v, cut := limits.List(*l, entries, entry, total); cut {
		c.record(field, uint32(len(*l)), limits.Bytes(*l))
		*l = v
	}
}

// env bounds the captured environment: at most limits.Env variables (by
// name order), each value limits.EnvVarBytes, limits.EnvBytes in all.
func (c clamper) env(x *Exec) {
	total, over := 0, len(x.Env) > limits.Env
	for k, v := range x.Env {
		total += len(k) + len(v)
		over = over || len(k) > limits.NameBytes || len(v) > limits.EnvVarBytes || !utf8.ValidString(k) || !utf8.ValidString(v)
	}
	if !over && total <= limits.EnvBytes {
		return
	}
	keys := make([]string, 0, len(x.Env))
	for k := range x.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	c.record("exec.env", uint32(len(keys)), uint64(total))
	out := make(map[string]string, min(len(keys), limits.Env))
	used := 0
	for _, k := range keys {
		v := x.Env[k]
		valid(&k)
		valid(&v)
		k, _ = limits.String(k, limits.NameBytes)
		v, _ = limits.String(v, limits.EnvVarBytes)
		if len(out) == limits.Env || used+len(k)+len(v) > limits.EnvBytes {
			break
		}
		out[k] = v
		used += len(k) + len(v)
	}
	x.Env, x.EnvTruncated = out, true
}

// suppressed bounds the rule engine's suppression counters (one per rule).
func (c clamper) suppressed(d *Detection) {
	if len(d.Suppressed) <= limits.Counters {
		long := false
		for k := range d.Suppressed {
			long = long || len(k) > limits.NameBytes || !utf8.ValidString(k)
		}
		if !long {
			return
		}
	}
	keys := make([]string, 0, len(d.Suppressed))
	for k := range d.Suppressed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]uint64, min(len(keys), limits.Counters))
	for _, k := range keys {
		if len(out) == limits.Counters {
			c.record("health.detection.suppressed", uint32(len(keys)), 0)
			break
		}
		v := d.Suppressed[k]
		valid(&k)
		k, _ = limits.String(k, limits.NameBytes)
		out[k] += v
	}
	d.Suppressed = out
}

// counters keeps the first limits.Counters counters (gap markers and
// health reports hold far fewer) and shortens their names.
func (c clamper) counters(field string, cs *[]Counter) {
	if n := len(*cs); n > limits.Counters {
		c.record(field, uint32(n), 0)
		*cs = (*cs)[:limits.Counters]
	}
	for i := range *cs {
		k := &(*cs)[i]
		f := field + "[" + strconv.Itoa(i) + "]."
		c.str(f+"kind", &k.Kind, limits.NameBytes)
		c.str(f+"reason", &k.Reason, limits.NameBytes)
	}
}
