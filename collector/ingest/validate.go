package ingest

import (
	"fmt"
	"strconv"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// pidMax is the kernel's PID_MAX_LIMIT (4M); no pid or tid exceeds it.
const pidMax = 4 << 20

// family groups event types by the detail they may carry.
type family int

const (
	famNone family = iota
	famExec
	famClone
	famExit
	famFile
	famNet
	famSecurity
	famHealth
	famGap
	famAgent
	famAlert
	famNamespace
)

func familyOf(t watchpostv1.EventType) (family, bool) {
	switch {
	case t == watchpostv1.EventType_EVENT_TYPE_EXEC:
		return famExec, true
	case t == watchpostv1.EventType_EVENT_TYPE_CLONE:
		return famClone, true
	case t == watchpostv1.EventType_EVENT_TYPE_EXIT:
		return famExit, true
	case t >= watchpostv1.EventType_EVENT_TYPE_FILE_OPEN && t <= watchpostv1.EventType_EVENT_TYPE_FILE_SYMLINK:
		return famFile, true
	case t >= watchpostv1.EventType_EVENT_TYPE_NET_CONNECT && t <= watchpostv1.EventType_EVENT_TYPE_NET_SOCKET:
		return famNet, true
	case t >= watchpostv1.EventType_EVENT_TYPE_MODULE_LOAD && t <= watchpostv1.EventType_EVENT_TYPE_MEMFD_EXEC,
		t == watchpostv1.EventType_EVENT_TYPE_USERFAULTFD, t == watchpostv1.EventType_EVENT_TYPE_MEMFD_CREATE:
		return famSecurity, true
	case t == watchpostv1.EventType_EVENT_TYPE_NET_CONNECT_RESULT:
		return famNet, true
	case t == watchpostv1.EventType_EVENT_TYPE_NAMESPACE:
		return famNamespace, true
	case t == watchpostv1.EventType_EVENT_TYPE_HEALTH:
		return famHealth, true
	case t == watchpostv1.EventType_EVENT_TYPE_GAP:
		return famGap, true
	case t == watchpostv1.EventType_EVENT_TYPE_AGENT_START || t == watchpostv1.EventType_EVENT_TYPE_AGENT_STOP:
		return famAgent, true
	case t == watchpostv1.EventType_EVENT_TYPE_ALERT:
		return famAlert, true
	}
	return famNone, false
}

// validator checks one batch's events; it fills agent and boot id.
type validator struct {
	limits  *Limits
	agentID string
	bootID  string
	prefix  string
}

func (v *validator) path(field string) string { return v.prefix + field }

func (v *validator) str(field, s string) error {
	if len(s) > v.limits.MaxStringBytes {
		return tooLarge(v.path(field), "%d bytes exceeds the limit of %d", len(s), v.limits.MaxStringBytes)
	}
	return nil
}

func (v *validator) strs(field string, ss []string) error {
	if len(ss) > v.limits.MaxListLen {
		return tooLarge(v.path(field), "%d entries exceed the limit of %d", len(ss), v.limits.MaxListLen)
	}
	for i, s := range ss {
		if err := v.str(field+"["+strconv.Itoa(i)+"]", s); err != nil {
			return err
		}
	}
	return nil
}

// strMap checks a map's size and every key and value.
func (v *validator) strMap(field string, m map[string]string) error {
	if err := v.mapLen(field, len(m)); err != nil {
		return err
	}
	for k, val := range m {
		if err := all(v.str(field+" key", k), v.str(field+"["+strconv.Quote(k)+"]", val)); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) mapLen(field string, n int) error {
	if n > v.limits.MaxListLen {
		return tooLarge(v.path(field), "%d entries exceed the limit of %d", n, v.limits.MaxListLen)
	}
	return nil
}

func (v *validator) pid(field string, pid uint32) error {
	if pid > pidMax {
		return fieldErr(v.path(field), "%d exceeds PID_MAX_LIMIT %d", pid, pidMax)
	}
	return nil
}

func (v *validator) port(field string, p uint32) error {
	if p > 65535 {
		return fieldErr(v.path(field), "%d is not a port", p)
	}
	return nil
}

// all returns the first error.
func all(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) event(i int, ev *watchpostv1.Event) error {
	v.prefix = "batch.events[" + strconv.Itoa(i) + "]."
	h := ev.Header
	if h == nil {
		return fieldErr(v.path("header"), "required")
	}
	fam, ok := familyOf(h.Type)
	if !ok {
		return fieldErr(v.path("header.type"), "unknown event type %d", int32(h.Type))
	}
	switch {
	case h.TimeUnixNano <= 0:
		return fieldErr(v.path("header.time_unix_nano"), "must be positive")
	case h.Host == "" || len(h.Host) > 255:
		return fieldErr(v.path("header.host"), "must be 1 to 255 bytes")
	case h.AgentId != "" && h.AgentId != v.agentID:
		return fieldErr(v.path("header.agent_id"), "%q differs from the batch's agent id", h.AgentId)
	case h.BootId != "" && h.BootId != v.bootID:
		return fieldErr(v.path("header.boot_id"), "%q differs from the batch's boot id", h.BootId)
	}
	h.AgentId, h.BootId = v.agentID, v.bootID
	p := ev.Process
	if p == nil {
		return fieldErr(v.path("process"), "required")
	}
	if err := all(
		v.pid("process.pid", p.Pid), v.pid("process.tid", p.Tid), v.pid("process.ppid", p.Ppid),
		v.str("process.comm", p.Comm), v.str("process.exe", p.Exe), v.strs("process.args", p.Args),
		v.str("process.cwd", p.Cwd), v.str("process.tty", p.Tty), v.str("process.container", p.Container),
		v.str("process.container_runtime", p.ContainerRuntime), v.str("process.container_image", p.ContainerImage),
		v.str("process.container_name", p.ContainerName), v.str("process.pod_name", p.PodName),
		v.str("process.pod_namespace", p.PodNamespace),
	); err != nil {
		return err
	}
	if len(ev.Ancestry) > v.limits.MaxListLen {
		return tooLarge(v.path("ancestry"), "%d entries exceed the limit of %d", len(ev.Ancestry), v.limits.MaxListLen)
	}
	for j, a := range ev.Ancestry {
		f := "ancestry[" + strconv.Itoa(j) + "]."
		if err := all(v.pid(f+"pid", a.Pid), v.str(f+"comm", a.Comm), v.str(f+"exe", a.Exe), v.strs(f+"args", a.Args)); err != nil {
			return err
		}
	}
	if in := ev.Industrial; in != nil {
		if err := all(v.str("industrial.protocol", in.Protocol), v.str("industrial.fieldbus", in.Fieldbus), v.str("industrial.device", in.Device)); err != nil {
			return err
		}
	}
	return v.detail(fam, h.Type, ev)
}

func (v *validator) detail(fam family, t watchpostv1.EventType, ev *watchpostv1.Event) error {
	if ev.Detail == nil {
		return nil
	}
	var got family
	var err error
	switch d := ev.Detail.(type) {
	case *watchpostv1.Event_Exec:
		x := d.Exec
		got, err = famExec, all(v.str("exec.exe_dev", x.ExeDev), v.strMap("exec.env", x.Env), v.strs("exec.env_duplicates", x.EnvDuplicates))
	case *watchpostv1.Event_Clone:
		got, err = famClone, all(v.pid("clone.child_pid", d.Clone.ChildPid), v.pid("clone.child_tid", d.Clone.ChildTid))
	case *watchpostv1.Event_Exit:
		got = famExit
	case *watchpostv1.Event_File:
		f := d.File
		got, err = famFile, all(v.str("file.path", f.Path), v.str("file.new_path", f.NewPath), v.str("file.dev", f.Dev),
			v.str("file.rdev", f.Rdev), v.str("file.dev_kind", f.DevKind), v.str("file.syscall", f.Syscall))
	case *watchpostv1.Event_Net:
		n := d.Net
		got, err = famNet, all(v.port("net.src_port", n.SrcPort), v.port("net.dst_port", n.DstPort),
			v.str("net.family", n.Family), v.str("net.protocol", n.Protocol), v.str("net.sock_type", n.SockType),
			v.str("net.src_addr", n.SrcAddr), v.str("net.dst_addr", n.DstAddr), v.str("net.direction", n.Direction), v.str("net.syscall", n.Syscall))
	case *watchpostv1.Event_Security:
		s := d.Security
		got, err = famSecurity, all(v.pid("security.target_pid", s.TargetPid), v.str("security.operation", s.Operation),
			v.str("security.target_comm", s.TargetComm), v.str("security.name", s.Name), v.str("security.path", s.Path),
			v.str("security.fs_type", s.FsType), v.str("security.params", s.Params))
	case *watchpostv1.Event_Namespace:
		n := d.Namespace
		got, err = famNamespace, all(v.str("namespace.operation", n.Operation), v.strs("namespace.namespaces", n.Namespaces),
			v.pid("namespace.target_pid", n.TargetPid), v.mapLen("namespace.inodes", len(n.Inodes)))
	case *watchpostv1.Event_Health:
		h := d.Health
		got, err = famHealth, all(v.str("health.version", h.Version), v.str("health.kernel", h.Kernel),
			v.str("health.capture_path", h.CapturePath), v.strs("health.programs", h.Programs), v.counters("health.counters", h.Counters),
			v.detection("health.detection.", h.Detection))
	case *watchpostv1.Event_Alert:
		got, err = famAlert, v.alert(d.Alert)
	case *watchpostv1.Event_Gap:
		got, err = famGap, all(v.str("gap.reason", d.Gap.Reason), v.counters("gap.counters", d.Gap.Counters))
	}
	if err != nil {
		return err
	}
	// Agent start/stop may carry the agent's health.
	if got != fam && !(fam == famAgent && got == famHealth) {
		return fieldErr(v.path("detail"), "%s detail does not match type %s", detailName(ev), t)
	}
	return nil
}

func (v *validator) detection(prefix string, d *watchpostv1.DetectionStatus) error {
	if d == nil {
		return nil
	}
	return all(v.strs(prefix+"errors", d.Errors), v.counters(prefix+"suppressed", d.Suppressed))
}

func (v *validator) alert(a *watchpostv1.DetectionAlert) error {
	if a.RuleId == "" {
		return fieldErr(v.path("alert.rule_id"), "empty")
	}
	if len(a.Matches) > v.limits.MaxListLen {
		return tooLarge(v.path("alert.matches"), "%d entries exceed the limit of %d", len(a.Matches), v.limits.MaxListLen)
	}
	if len(a.Events) > v.limits.MaxListLen {
		return tooLarge(v.path("alert.events"), "%d entries exceed the limit of %d", len(a.Events), v.limits.MaxListLen)
	}
	errs := []error{v.str("alert.rule_id", a.RuleId), v.str("alert.title", a.Title), v.str("alert.level", a.Level),
		v.strs("alert.techniques", a.Techniques), v.strs("alert.tags", a.Tags), v.str("alert.source", a.Source),
		v.str("alert.correlation", a.Correlation)}
	for i, m := range a.Matches {
		f := "alert.matches[" + strconv.Itoa(i) + "]."
		errs = append(errs, v.str(f+"field", m.Field), v.str(f+"value", m.Value))
	}
	for i, r := range a.Events {
		errs = append(errs, v.pid("alert.events["+strconv.Itoa(i)+"].pid", r.Pid))
	}
	return all(errs...)
}

func (v *validator) counters(field string, cs []*watchpostv1.Counter) error {
	if len(cs) > v.limits.MaxListLen {
		return tooLarge(v.path(field), "%d entries exceed the limit of %d", len(cs), v.limits.MaxListLen)
	}
	for i, c := range cs {
		f := field + "[" + strconv.Itoa(i) + "]."
		if err := all(v.str(f+"kind", c.Kind), v.str(f+"reason", c.Reason)); err != nil {
			return err
		}
	}
	return nil
}

func detailName(ev *watchpostv1.Event) string {
	return fmt.Sprint(ev.ProtoReflect().WhichOneof(ev.ProtoReflect().Descriptor().Oneofs().ByName("detail")).Name())
}

// ValidateHeartbeat checks a heartbeat's strings and lists.
func (d *Decoder) ValidateHeartbeat(hb *watchpostv1.Heartbeat) error {
	v := validator{limits: &d.limits, prefix: "heartbeat."}
	return all(v.str("boot_id", hb.BootId), v.str("run_id", hb.RunId), v.str("host", hb.Host),
		v.str("version", hb.Version), v.str("kernel", hb.Kernel), v.str("capture_path", hb.CapturePath),
		v.strs("programs", hb.Programs), v.counters("drops", hb.Drops), v.detection("detection.", hb.Detection))
}
