package ingest

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/proto/limits"
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
	famTamper
	famNetInterface
	famICS
	famResponse
	famPolicies
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
	case t == watchpostv1.EventType_EVENT_TYPE_AGENT_TAMPER:
		return famTamper, true
	case t == watchpostv1.EventType_EVENT_TYPE_NET_INVENTORY:
		return famNet, true
	case t == watchpostv1.EventType_EVENT_TYPE_NET_INTERFACE, t == watchpostv1.EventType_EVENT_TYPE_NET_ADDRESS:
		return famNetInterface, true
	case t >= watchpostv1.EventType_EVENT_TYPE_RESPONSE_EXEC && t <= watchpostv1.EventType_EVENT_TYPE_RESPONSE_DEVICE,
		t == watchpostv1.EventType_EVENT_TYPE_RESPONSE:
		return famResponse, true
	case t == watchpostv1.EventType_EVENT_TYPE_RESPONSE_POLICIES:
		return famPolicies, true
	case t == watchpostv1.EventType_EVENT_TYPE_ICS_OP:
		return famICS, true
	}
	return famNone, false
}

// Reasons an event is refused (the batch's other events are stored).
const (
	RefusedDecode         = "decode"          // not a valid serialized Event
	RefusedNoHeader       = "no_header"       // header missing
	RefusedUnknownType    = "unknown_type"    // header.type not a known event type
	RefusedNoProcess      = "no_process"      // process missing
	RefusedBadPID         = "bad_pid"         // a pid above PID_MAX_LIMIT
	RefusedBadPort        = "bad_port"        // a port above 65535
	RefusedDetailMismatch = "detail_mismatch" // the detail does not belong to the type
	RefusedIDMismatch     = "id_mismatch"     // header agent id or boot id differs from the batch's
	RefusedTooLarge       = "event_too_large" // over max_event_bytes even after truncation
	RefusedDetailInvalid  = "detail_invalid"  // the detail lacks what it needs (an alert's rule id)
)

// Reasons an event is stored altered.
const (
	AlteredTruncated   = "truncated"     // strings or lists shortened to the limits
	AlteredTimeClamped = "time_clamped"  // a time in the future beyond the allowed skew, or not positive
	AlteredHost        = "host_mismatch" // named another host than the agent's identity
)

// problem is what was wrong with one event.
type problem struct {
	reason string
	err    *FieldError
}

// validator checks one batch's events, shortens over-long fields and
// clamps times; it fills agent and boot id.
type validator struct {
	limits   *Limits
	agentID  string
	bootID   string
	received time.Time
	prefix   string

	// per event
	truncated []*watchpostv1.Truncation
	altered   bool
}

func (v *validator) path(field string) string { return v.prefix + field }

func (v *validator) note(field string, entries uint32, bytes uint64) {
	for _, t := range v.truncated {
		if t.Field == field {
			return
		}
	}
	v.truncated = append(v.truncated, &watchpostv1.Truncation{Field: field, Entries: entries, Bytes: bytes})
}

// str shortens s to the string limit, keeping head and tail.
func (v *validator) str(field string, s *string) {
	if n, cut := limits.String(*s, v.limits.MaxStringBytes); cut {
		v.note(field, 0, uint64(len(*s)))
		*s = n
	}
}

// pathStr is str for paths: whole trailing components are kept.
func (v *validator) pathStr(field string, s *string) {
	if n, cut := limits.Path(*s, v.limits.MaxStringBytes); cut {
		v.note(field, 0, uint64(len(*s)))
		*s = n
	}
}

func (v *validator) strs(field string, ss *[]string) {
	if n, cut := limits.List(*ss, v.limits.MaxListLen, v.limits.MaxStringBytes, v.limits.MaxEventBytes/2); cut {
		v.note(field, uint32(len(*ss)), limits.Bytes(*ss))
		*ss = n
	}
}

// strMap shortens a map of strings: at most MaxListLen entries (the first
// names in order), keys and values within the string limit.
func (v *validator) strMap(field string, m *map[string]string) {
	over := len(*m) > v.limits.MaxListLen
	total := 0
	for k, val := range *m {
		over = over || len(k) > v.limits.MaxStringBytes || len(val) > v.limits.MaxStringBytes
		total += len(k) + len(val)
	}
	if !over {
		return
	}
	v.note(field, uint32(len(*m)), uint64(total))
	out := make(map[string]string, min(len(*m), v.limits.MaxListLen))
	for _, k := range sortedKeys(*m) {
		if len(out) == v.limits.MaxListLen {
			break
		}
		val := (*m)[k]
		k, _ = limits.String(k, v.limits.MaxStringBytes)
		val, _ = limits.String(val, v.limits.MaxStringBytes)
		out[k] = val
	}
	*m = out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// firstKeys keeps the entries of the first n names in order.
func firstKeys[V any](m map[string]V, n int) map[string]V {
	out := make(map[string]V, n)
	for _, k := range sortedKeys(m)[:n] {
		out[k] = m[k]
	}
	return out
}

func (v *validator) pid(field string, pid uint32) *problem {
	if pid > pidMax {
		return &problem{RefusedBadPID, fieldErr(v.path(field), "%d exceeds PID_MAX_LIMIT %d", pid, pidMax)}
	}
	return nil
}

func (v *validator) port(field string, p uint32) *problem {
	if p > 65535 {
		return &problem{RefusedBadPort, fieldErr(v.path(field), "%d is not a port", p)}
	}
	return nil
}

// first returns the first problem.
func first(ps ...*problem) *problem {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

// event checks ev, shortens and clamps it in place. It returns the
// problem that refuses the event, or nil; v.truncated and v.altered tell
// whether the event was changed (and must be serialized again).
func (v *validator) event(i int, ev *watchpostv1.Event) *problem {
	v.prefix = "batch.events[" + strconv.Itoa(i) + "]."
	v.truncated, v.altered = nil, false
	h := ev.Header
	if h == nil {
		return &problem{RefusedNoHeader, fieldErr(v.path("header"), "required")}
	}
	fam, ok := familyOf(h.Type)
	if !ok {
		return &problem{RefusedUnknownType, fieldErr(v.path("header.type"), "unknown event type %d", int32(h.Type))}
	}
	switch {
	case h.AgentId != "" && h.AgentId != v.agentID:
		return &problem{RefusedIDMismatch, fieldErr(v.path("header.agent_id"), "%q differs from the batch's agent id", h.AgentId)}
	case h.BootId != "" && h.BootId != v.bootID:
		return &problem{RefusedIDMismatch, fieldErr(v.path("header.boot_id"), "%q differs from the batch's boot id", h.BootId)}
	}
	// Agent and boot id come from the authenticated batch; the stored
	// bytes leave them empty (they are filled when read).
	h.AgentId, h.BootId = "", ""
	p := ev.Process
	if p == nil {
		return &problem{RefusedNoProcess, fieldErr(v.path("process"), "required")}
	}
	if pr := first(v.pid("process.pid", p.Pid), v.pid("process.tid", p.Tid), v.pid("process.ppid", p.Ppid)); pr != nil {
		return pr
	}
	for j, a := range ev.Ancestry {
		if pr := v.pid("ancestry["+strconv.Itoa(j)+"].pid", a.Pid); pr != nil {
			return pr
		}
	}
	if pr := v.detail(fam, h.Type, ev); pr != nil {
		return pr
	}
	v.clampTime(h)
	v.str("header.host", &h.Host)
	v.str("process.comm", &p.Comm)
	v.pathStr("process.exe", &p.Exe)
	v.strs("process.args", &p.Args)
	v.pathStr("process.cwd", &p.Cwd)
	v.str("process.tty", &p.Tty)
	v.str("process.container", &p.Container)
	v.str("process.container_runtime", &p.ContainerRuntime)
	v.str("process.container_image", &p.ContainerImage)
	v.str("process.container_name", &p.ContainerName)
	v.str("process.pod_name", &p.PodName)
	v.str("process.pod_namespace", &p.PodNamespace)
	if n := len(ev.Ancestry); n > v.limits.MaxListLen {
		v.note("ancestry", uint32(n), 0)
		ev.Ancestry = ev.Ancestry[:v.limits.MaxListLen]
	}
	for j, a := range ev.Ancestry {
		f := "ancestry[" + strconv.Itoa(j) + "]."
		v.str(f+"comm", &a.Comm)
		v.pathStr(f+"exe", &a.Exe)
		v.strs(f+"args", &a.Args)
	}
	if in := ev.Industrial; in != nil {
		v.str("industrial.protocol", &in.Protocol)
		v.str("industrial.fieldbus", &in.Fieldbus)
		v.pathStr("industrial.device", &in.Device)
	}
	v.detailStrings(ev)
	if len(v.truncated) > 0 {
		// Keep what the agent already recorded; add what was cut here.
		have := map[string]bool{}
		for _, t := range h.Truncated {
			have[t.Field] = true
		}
		for _, t := range v.truncated {
			if !have[t.Field] {
				h.Truncated = append(h.Truncated, t)
			}
		}
		if n := len(h.Truncated); n > v.limits.MaxListLen {
			h.Truncated = h.Truncated[:v.limits.MaxListLen]
		}
		v.altered = true
	}
	for _, t := range h.Truncated {
		v.str("header.truncated[].field", &t.Field)
	}
	return nil
}

// clampTime moves a time in the future beyond the allowed skew (or a time
// that is not positive) to the receipt time, keeping the agent's value.
func (v *validator) clampTime(h *watchpostv1.Header) {
	if v.received.IsZero() {
		return
	}
	recv := v.received.UnixNano()
	if h.TimeUnixNano > 0 && h.TimeUnixNano <= recv+int64(v.limits.MaxClockSkew) {
		return
	}
	if !h.TimeClamped {
		h.AgentTimeUnixNano = h.TimeUnixNano
	}
	h.TimeUnixNano, h.TimeClamped = recv, true
	v.altered = true
}

func (v *validator) detail(fam family, t watchpostv1.EventType, ev *watchpostv1.Event) *problem {
	if ev.Detail == nil {
		return nil
	}
	var got family
	var pr *problem
	switch d := ev.Detail.(type) {
	case *watchpostv1.Event_Exec:
		got = famExec
	case *watchpostv1.Event_Clone:
		got, pr = famClone, first(v.pid("clone.child_pid", d.Clone.ChildPid), v.pid("clone.child_tid", d.Clone.ChildTid))
	case *watchpostv1.Event_Exit:
		got = famExit
	case *watchpostv1.Event_File:
		got = famFile
	case *watchpostv1.Event_Net:
		got, pr = famNet, first(v.port("net.src_port", d.Net.SrcPort), v.port("net.dst_port", d.Net.DstPort))
	case *watchpostv1.Event_Security:
		got, pr = famSecurity, v.pid("security.target_pid", d.Security.TargetPid)
	case *watchpostv1.Event_Namespace:
		got, pr = famNamespace, v.pid("namespace.target_pid", d.Namespace.TargetPid)
	case *watchpostv1.Event_Health:
		got = famHealth
	case *watchpostv1.Event_Alert:
		got, pr = famAlert, v.alert(d.Alert)
	case *watchpostv1.Event_Gap:
		got = famGap
	case *watchpostv1.Event_Tamper:
		got = famTamper
	case *watchpostv1.Event_NetInterface:
		got = famNetInterface
	case *watchpostv1.Event_Response:
		got, pr = famResponse, v.port("response.dst_port", d.Response.DstPort)
		for i, p := range d.Response.Targets {
			if pr == nil {
				pr = v.pid("response.targets["+strconv.Itoa(i)+"]", p)
			}
		}
	case *watchpostv1.Event_Policies:
		got = famPolicies
	case *watchpostv1.Event_Ics:
		got, pr = famICS, first(v.port("ics.src_port", d.Ics.SrcPort), v.port("ics.dst_port", d.Ics.DstPort))
	default:
		got = famNone
	}
	if pr != nil {
		return pr
	}
	// Agent start/stop may carry the agent's health.
	if got != fam && !(fam == famAgent && got == famHealth) {
		return &problem{RefusedDetailMismatch, fieldErr(v.path("detail"), "%s detail does not match type %s", detailName(ev), t)}
	}
	return nil
}

// alert checks a detection alert's rule id and the pids it names.
func (v *validator) alert(a *watchpostv1.DetectionAlert) *problem {
	if a.RuleId == "" {
		return &problem{RefusedDetailInvalid, fieldErr(v.path("alert.rule_id"), "empty")}
	}
	for i, r := range a.Events {
		if pr := v.pid("alert.events["+strconv.Itoa(i)+"].pid", r.Pid); pr != nil {
			return pr
		}
	}
	return nil
}

// detailStrings shortens the detail's strings and lists.
func (v *validator) detailStrings(ev *watchpostv1.Event) {
	switch d := ev.Detail.(type) {
	case *watchpostv1.Event_Exec:
		x := d.Exec
		v.str("exec.exe_dev", &x.ExeDev)
		v.strMap("exec.env", &x.Env)
		v.strs("exec.env_duplicates", &x.EnvDuplicates)
	case *watchpostv1.Event_Namespace:
		n := d.Namespace
		v.str("namespace.operation", &n.Operation)
		v.strs("namespace.namespaces", &n.Namespaces)
		if len(n.Inodes) > v.limits.MaxListLen {
			v.note("namespace.inodes", uint32(len(n.Inodes)), 0)
			n.Inodes = firstKeys(n.Inodes, v.limits.MaxListLen)
		}
	case *watchpostv1.Event_File:
		f := d.File
		v.pathStr("file.path", &f.Path)
		v.pathStr("file.new_path", &f.NewPath)
		for _, s := range []struct {
			field string
			p     *string
		}{{"file.dev", &f.Dev}, {"file.rdev", &f.Rdev}, {"file.dev_kind", &f.DevKind}, {"file.syscall", &f.Syscall}} {
			v.str(s.field, s.p)
		}
	case *watchpostv1.Event_Net:
		n := d.Net
		for _, s := range []struct {
			field string
			p     *string
		}{{"net.family", &n.Family}, {"net.protocol", &n.Protocol}, {"net.sock_type", &n.SockType}, {"net.src_addr", &n.SrcAddr},
			{"net.dst_addr", &n.DstAddr}, {"net.direction", &n.Direction}, {"net.syscall", &n.Syscall},
			{"net.state", &n.State}, {"net.interface", &n.Interface}, {"net.zone", &n.Zone}, {"net.peer_zone", &n.PeerZone}} {
			v.str(s.field, s.p)
		}
	case *watchpostv1.Event_Ics:
		i := d.Ics
		for _, s := range []struct {
			field string
			p     *string
		}{{"ics.protocol", &i.Protocol}, {"ics.role", &i.Role}, {"ics.class", &i.Class}, {"ics.function", &i.Function},
			{"ics.owner", &i.Owner}, {"ics.family", &i.Family}, {"ics.src_addr", &i.SrcAddr}, {"ics.dst_addr", &i.DstAddr},
			{"ics.direction", &i.Direction}} {
			v.str(s.field, s.p)
		}
		for _, e := range i.Exceptions {
			v.str("ics.exceptions.name", &e.Name)
		}
	case *watchpostv1.Event_NetInterface:
		n := d.NetInterface
		for _, s := range []struct {
			field string
			p     *string
		}{{"net_interface.action", &n.Action}, {"net_interface.name", &n.Name}, {"net_interface.type", &n.Type},
			{"net_interface.mac", &n.Mac}, {"net_interface.oper_state", &n.OperState}, {"net_interface.zone", &n.Zone},
			{"net_interface.address", &n.Address}, {"net_interface.address_zone", &n.AddressZone},
			{"net_interface.previous_name", &n.PreviousName}} {
			v.str(s.field, s.p)
		}
		v.strs("net_interface.addresses", &n.Addresses)
		v.strs("net_interface.changed", &n.Changed)
	case *watchpostv1.Event_Security:
		s := d.Security
		for _, f := range []struct {
			field string
			p     *string
		}{{"security.operation", &s.Operation}, {"security.target_comm", &s.TargetComm}, {"security.name", &s.Name},
			{"security.fs_type", &s.FsType}, {"security.params", &s.Params}} {
			v.str(f.field, f.p)
		}
		v.pathStr("security.path", &s.Path)
		v.pathStr("security.target_exe", &s.TargetExe)
		v.strs("security.target_args", &s.TargetArgs)
	case *watchpostv1.Event_Health:
		h := d.Health
		v.str("health.version", &h.Version)
		v.str("health.kernel", &h.Kernel)
		v.str("health.capture_path", &h.CapturePath)
		v.strs("health.programs", &h.Programs)
		v.counters("health.counters", &h.Counters)
		if ds := h.Detection; ds != nil {
			v.strs("health.detection.errors", &ds.Errors)
			v.counters("health.detection.suppressed", &ds.Suppressed)
		}
	case *watchpostv1.Event_Response:
		r := d.Response
		for _, f := range []struct {
			field string
			p     *string
		}{{"response.policy", &r.Policy}, {"response.action", &r.Action}, {"response.mode", &r.Mode}, {"response.outcome", &r.Outcome},
			{"response.error", &r.Error}, {"response.family", &r.Family}, {"response.protocol", &r.Protocol},
			{"response.sock_type", &r.SockType}, {"response.dst_addr", &r.DstAddr}, {"response.dev_kind", &r.DevKind},
			{"response.device", &r.Device}, {"response.rule_id", &r.RuleId}} {
			v.str(f.field, f.p)
		}
		v.pathStr("response.exe", &r.Exe)
		v.strs("response.access", &r.Access)
		if n := len(r.Targets); n > v.limits.MaxListLen {
			v.note("response.targets", uint32(n), 0)
			r.Targets = r.Targets[:v.limits.MaxListLen]
		}
	case *watchpostv1.Event_Policies:
		p := d.Policies
		v.pathStr("policies.file", &p.File)
		v.str("policies.source", &p.Source)
		v.strs("policies.errors", &p.Errors)
		if n := len(p.Policies); n > v.limits.MaxListLen {
			v.note("policies.policies", uint32(n), 0)
			p.Policies = p.Policies[:v.limits.MaxListLen]
		}
		for i, ps := range p.Policies {
			f := "policies.policies[" + strconv.Itoa(i) + "]."
			v.str(f+"id", &ps.Id)
			v.str(f+"unenforceable", &ps.Unenforceable)
		}
	case *watchpostv1.Event_Alert:
		a := d.Alert
		for _, f := range []struct {
			field string
			p     *string
		}{{"alert.rule_id", &a.RuleId}, {"alert.title", &a.Title}, {"alert.level", &a.Level}, {"alert.source", &a.Source},
			{"alert.correlation", &a.Correlation}} {
			v.str(f.field, f.p)
		}
		v.strs("alert.techniques", &a.Techniques)
		v.strs("alert.tags", &a.Tags)
		if n := len(a.Matches); n > v.limits.MaxListLen {
			v.note("alert.matches", uint32(n), 0)
			a.Matches = a.Matches[:v.limits.MaxListLen]
		}
		for i, m := range a.Matches {
			f := "alert.matches[" + strconv.Itoa(i) + "]."
			v.str(f+"field", &m.Field)
			v.str(f+"value", &m.Value)
		}
		if n := len(a.Events); n > v.limits.MaxListLen {
			v.note("alert.events", uint32(n), 0)
			a.Events = a.Events[:v.limits.MaxListLen]
		}
	case *watchpostv1.Event_Gap:
		v.str("gap.reason", &d.Gap.Reason)
		v.counters("gap.counters", &d.Gap.Counters)
	case *watchpostv1.Event_Tamper:
		t := d.Tamper
		v.str("tamper.what", &t.What)
		v.pathStr("tamper.file", &t.File)
		v.str("tamper.action", &t.Action)
		v.str("tamper.error", &t.Error)
	}
}

func (v *validator) counters(field string, cs *[]*watchpostv1.Counter) {
	if n := len(*cs); n > v.limits.MaxListLen {
		v.note(field, uint32(n), 0)
		*cs = (*cs)[:v.limits.MaxListLen]
	}
	for i, c := range *cs {
		f := field + "[" + strconv.Itoa(i) + "]."
		v.str(f+"kind", &c.Kind)
		v.str(f+"reason", &c.Reason)
	}
}

func detailName(ev *watchpostv1.Event) string {
	return fmt.Sprint(ev.ProtoReflect().WhichOneof(ev.ProtoReflect().Descriptor().Oneofs().ByName("detail")).Name())
}

// ValidateHeartbeat checks a heartbeat's size, strings and lists. A
// heartbeat carries no events: one over the limits is refused whole.
func (d *Decoder) ValidateHeartbeat(hb *watchpostv1.Heartbeat) error {
	if n := proto.Size(hb); n > limits.HeartbeatBytes {
		return tooLarge("heartbeat", "%d bytes exceeds the limit of %d", n, limits.HeartbeatBytes)
	}
	if n := len(hb.Programs); n > d.limits.MaxListLen {
		return tooLarge("heartbeat.programs", "%d entries exceed the limit of %d", n, d.limits.MaxListLen)
	}
	if n := len(hb.Drops); n > d.limits.MaxListLen {
		return tooLarge("heartbeat.drops", "%d entries exceed the limit of %d", n, d.limits.MaxListLen)
	}
	if ds := hb.Detection; ds != nil && (len(ds.Errors) > d.limits.MaxListLen || len(ds.Suppressed) > d.limits.MaxListLen) {
		return tooLarge("heartbeat.detection", "more than %d errors or suppressed counters", d.limits.MaxListLen)
	}
	if p := hb.Response; p != nil {
		if len(p.Errors) > d.limits.MaxListLen || len(p.Policies) > d.limits.MaxListLen {
			return tooLarge("heartbeat.response", "more than %d errors or policies", d.limits.MaxListLen)
		}
		for i, ps := range p.Policies {
			if len(ps.Id) > limits.NameBytes {
				return tooLarge("heartbeat.response.policies["+strconv.Itoa(i)+"].id", "%d bytes exceeds the limit of %d", len(ps.Id), limits.NameBytes)
			}
		}
	}
	for _, s := range []struct{ field, s string }{{"boot_id", hb.BootId}, {"run_id", hb.RunId}, {"host", hb.Host},
		{"version", hb.Version}, {"kernel", hb.Kernel}, {"capture_path", hb.CapturePath}, {"instance_id", hb.InstanceId}} {
		if len(s.s) > limits.NameBytes {
			return tooLarge("heartbeat."+s.field, "%d bytes exceeds the limit of %d", len(s.s), limits.NameBytes)
		}
	}
	return nil
}
