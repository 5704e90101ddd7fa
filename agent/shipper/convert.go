package shipper

import (
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/watchpost/watchpost/agent/event"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// utf8Safe replaces invalid UTF-8 (Linux paths and argv are bytes) with
// U+FFFD, as encoding/json does for the JSON output, because proto3
// strings must be valid UTF-8.
func utf8Safe(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func utf8SafeAll(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = utf8Safe(s)
	}
	return out
}

// utf8SafeMap makes keys and values valid UTF-8 (environment variables
// are bytes); a key that collides after the repair keeps its first value.
func utf8SafeMap(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		k = utf8Safe(k)
		if _, dup := out[k]; !dup {
			out[k] = utf8Safe(v)
		}
	}
	return out
}

// ToProto fills dst from ev. dst is reset first so that one message can be
// reused for every event. Agent id and boot id stay empty: the collector
// fills them from the authenticated batch.
func ToProto(ev *event.Event, dst *watchpostv1.Event) {
	dst.Reset()
	var ts int64
	if !ev.Time.IsZero() {
		ts = ev.Time.UnixNano()
	}
	dst.Header = &watchpostv1.Header{
		Type:         watchpostv1.EventType(ev.Kind),
		TimeUnixNano: ts,
		BootNs:       ev.BootNS,
		Seq:          ev.Seq,
		Host:         utf8Safe(ev.Host),
		Cpu:          ev.CPU,
	}
	if len(ev.Truncated) > 0 {
		dst.Header.Truncated = make([]*watchpostv1.Truncation, len(ev.Truncated))
		for i, t := range ev.Truncated {
			dst.Header.Truncated[i] = &watchpostv1.Truncation{Field: utf8Safe(t.Field), Entries: t.Entries, Bytes: t.Bytes}
		}
	}
	p := &ev.Process
	dst.Process = &watchpostv1.Process{
		Pid: p.PID, Tid: p.TID, Ppid: p.PPID,
		Uid: p.UID, Gid: p.GID, Euid: p.EUID, Egid: p.EGID,
		SessionId: p.SessionID, CgroupId: p.CgroupID,
		Comm: utf8Safe(p.Comm), Exe: utf8Safe(p.Exe), Args: utf8SafeAll(p.Args),
		Cwd: utf8Safe(p.Cwd), Tty: utf8Safe(p.TTY), StartBootNs: p.StartBootNS,
		Container: utf8Safe(p.Container), ContainerRuntime: utf8Safe(p.ContainerRuntime),
		ContainerImage: utf8Safe(p.ContainerImage), ContainerName: utf8Safe(p.ContainerName),
		PodName: utf8Safe(p.PodName), PodNamespace: utf8Safe(p.PodNamespace),
	}
	if auid, ok := p.LoginUID.Set(); ok {
		dst.Process.Auid = &auid
	}
	if len(ev.Ancestry) > 0 {
		dst.Ancestry = make([]*watchpostv1.Ancestor, len(ev.Ancestry))
		for i := range ev.Ancestry {
			a := &ev.Ancestry[i]
			dst.Ancestry[i] = &watchpostv1.Ancestor{
				Pid: a.PID, Comm: utf8Safe(a.Comm), Exe: utf8Safe(a.Exe), Args: utf8SafeAll(a.Args), Uid: a.UID,
			}
		}
	}
	if in := ev.Industrial; in != nil {
		dst.Industrial = &watchpostv1.Industrial{
			Protocol: utf8Safe(in.Protocol), Fieldbus: utf8Safe(in.Fieldbus), Device: utf8Safe(in.Device), Sniffing: in.Sniffing,
		}
	}
	switch {
	case ev.ICS != nil: // before Net: an ics_op's endpoints are in its detail
		dst.Detail = &watchpostv1.Event_Ics{Ics: ICSToProto(ev.ICS, ev.Net)}
	case ev.Exec != nil:
		x := ev.Exec
		dst.Detail = &watchpostv1.Event_Exec{Exec: &watchpostv1.Exec{
			ArgsTruncated: x.ArgsTruncated, ExeTruncated: x.ExeTruncated, Argc: x.Argc, ExeInode: x.ExeInode, ExeDev: utf8Safe(x.ExeDev),
			Env: utf8SafeMap(x.Env), EnvDuplicates: utf8SafeAll(x.EnvDuplicates), EnvTruncated: x.EnvTruncated, Envc: x.Envc,
		}}
	case ev.Clone != nil:
		c := ev.Clone
		dst.Detail = &watchpostv1.Event_Clone{Clone: &watchpostv1.Clone{ChildPid: c.ChildPID, ChildTid: c.ChildTID, Thread: c.Thread}}
	case ev.Exit != nil:
		x := ev.Exit
		dst.Detail = &watchpostv1.Event_Exit{Exit: &watchpostv1.Exit{
			Code: int32(x.Code), Signal: int32(x.Signal), CoreDumped: x.CoreDumped, LifetimeNs: x.LifetimeNS,
		}}
	case ev.File != nil:
		f := ev.File
		dst.Detail = &watchpostv1.Event_File{File: &watchpostv1.File{
			Path: utf8Safe(f.Path), NewPath: utf8Safe(f.NewPath), PathTruncated: f.PathTruncated, Watched: f.Watched,
			Flags: f.Flags, Mode: f.Mode, Write: f.Write, Result: f.Result, Errno: f.Errno, Inode: f.Inode,
			Dev: utf8Safe(f.Dev), Rdev: utf8Safe(f.RDev), DevKind: utf8Safe(f.DevKind), OwnerUid: f.UID, OwnerGid: f.GID,
			Syscall: utf8Safe(f.Syscall), Size: f.Size,
		}}
	case ev.Net != nil:
		n := ev.Net
		dst.Detail = &watchpostv1.Event_Net{Net: &watchpostv1.Net{
			Family: utf8Safe(n.Family), Protocol: utf8Safe(n.Protocol), SockType: utf8Safe(n.SockType),
			SrcAddr: utf8Safe(n.SrcAddr), SrcPort: uint32(n.SrcPort), DstAddr: utf8Safe(n.DstAddr), DstPort: uint32(n.DstPort),
			Result: n.Result, Errno: n.Errno, BytesSent: n.BytesSent, BytesRecv: n.BytesRecv, DurationNs: n.DurationNS,
			Direction: utf8Safe(n.Direction), Syscall: utf8Safe(n.Syscall),
			State: n.State, Interface: utf8Safe(n.Interface), Zone: utf8Safe(n.Zone), PeerZone: utf8Safe(n.PeerZone),
		}}
	case ev.Security != nil:
		s := ev.Security
		dst.Detail = &watchpostv1.Event_Security{Security: &watchpostv1.Security{
			Operation: utf8Safe(s.Operation), TargetPid: s.TargetPID, TargetComm: utf8Safe(s.TargetComm),
			TargetExe: utf8Safe(s.TargetExe), TargetArgs: utf8SafeAll(s.TargetArgs), TargetUid: s.TargetUID,
			Signal: int32(s.Signal), Name: utf8Safe(s.Name), Path: utf8Safe(s.Path), FsType: utf8Safe(s.FSType),
			OldId: s.OldID, NewId: s.NewID, Requested: s.Requested, Flags: s.Flags, Result: s.Result, Errno: s.Errno,
			Params: utf8Safe(s.Params),
		}}
	case ev.Namespace != nil:
		n := ev.Namespace
		dst.Detail = &watchpostv1.Event_Namespace{Namespace: &watchpostv1.Namespace{
			Operation: n.Operation, Namespaces: n.Namespaces, Flags: n.Flags, Inodes: n.Inodes,
			TargetInode: n.TargetInode, TargetPid: n.TargetPID, Result: n.Result, Errno: n.Errno,
		}}
	case ev.Health != nil:
		dst.Detail = &watchpostv1.Event_Health{Health: HealthToProto(ev.Health)}
	case ev.Gap != nil:
		dst.Detail = &watchpostv1.Event_Gap{Gap: &watchpostv1.Gap{Reason: utf8Safe(ev.Gap.Reason), Counters: countersToProto(ev.Gap.Counters)}}
	case ev.Alert != nil:
		dst.Detail = &watchpostv1.Event_Alert{Alert: AlertToProto(ev.Alert)}
	case ev.Interface != nil:
		n := ev.Interface
		dst.Detail = &watchpostv1.Event_NetInterface{NetInterface: &watchpostv1.NetInterface{
			Action: n.Action, Index: n.Index, Name: utf8Safe(n.Name), Type: utf8Safe(n.Type), Mac: n.MAC, Mtu: n.MTU,
			Up: n.Up, OperState: utf8Safe(n.OperState), Zone: utf8Safe(n.Zone), Addresses: n.Addresses,
			Address: n.Address, AddressZone: utf8Safe(n.AddressZone), Changed: n.Changed, PreviousName: utf8Safe(n.PreviousName),
		}}
	case ev.Tamper != nil:
		t := ev.Tamper
		dst.Detail = &watchpostv1.Event_Tamper{Tamper: &watchpostv1.Tamper{
			What: utf8Safe(t.What), File: utf8Safe(t.File), Action: utf8Safe(t.Action), Error: utf8Safe(t.Error),
		}}
	case ev.Response != nil:
		dst.Detail = &watchpostv1.Event_Response{Response: ResponseToProto(ev.Response)}
	case ev.Policies != nil:
		dst.Detail = &watchpostv1.Event_Policies{Policies: PoliciesToProto(ev.Policies)}
	}
}

// ResponseToProto converts what a response policy did.
func ResponseToProto(r *event.Response) *watchpostv1.Response {
	return &watchpostv1.Response{
		Policy: utf8Safe(r.Policy), Action: r.Action, Mode: r.Mode, Outcome: r.Outcome, Error: utf8Safe(r.Error),
		Exe: utf8Safe(r.Exe), Family: r.Family, Protocol: r.Protocol, SockType: r.SockType, DstAddr: r.DstAddr,
		DstPort: uint32(r.DstPort), Send: r.Send, DevKind: r.DevKind, Device: r.Device, Access: r.Access,
		RuleId: utf8Safe(r.RuleID), Targets: r.Targets, Group: r.Group,
	}
}

// PoliciesToProto converts the response policy set's state.
func PoliciesToProto(p *event.Policies) *watchpostv1.Policies {
	if p == nil {
		return nil
	}
	out := &watchpostv1.Policies{File: utf8Safe(p.File), Generation: p.Generation, Source: p.Source,
		Errors: utf8SafeAll(p.Errors), Enforcing: p.Enforcing}
	if !p.LoadedAt.IsZero() {
		out.LoadedAtUnixNano = p.LoadedAt.UnixNano()
	}
	for _, s := range p.Policies {
		out.Policies = append(out.Policies, &watchpostv1.PolicyStatus{Id: utf8Safe(s.ID), Action: s.Action, Mode: s.Mode,
			Unenforceable: utf8Safe(s.Unenforceable), Acted: s.Acted, WouldHave: s.WouldHave, Failed: s.Failed})
	}
	return out
}

// AlertToProto converts a detection alert.
func AlertToProto(a *event.Alert) *watchpostv1.DetectionAlert {
	out := &watchpostv1.DetectionAlert{
		RuleId: utf8Safe(a.RuleID), Title: utf8Safe(a.Title), Level: a.Level, Techniques: utf8SafeAll(a.Techniques),
		Tags: utf8SafeAll(a.Tags), Source: utf8Safe(a.Source), Correlation: a.Correlation, Count: a.Count,
		Cgroup: utf8Safe(a.Cgroup), Folded: a.Folded,
	}
	if an := a.Baseline; an != nil {
		out.Baseline = &watchpostv1.BaselineAnomaly{Family: an.Family, Item: utf8SafeAll(an.Item), Known: utf8SafeAll(an.Known),
			KnownCount: uint32(an.KnownCount), LearnedNs: an.LearnedNS, Also: utf8SafeAll(an.Also)}
	}
	for _, m := range a.Matches {
		out.Matches = append(out.Matches, &watchpostv1.MatchedField{Field: utf8Safe(m.Field), Value: utf8Safe(m.Value)})
	}
	for _, r := range a.Events {
		var ts int64
		if !r.Time.IsZero() {
			ts = r.Time.UnixNano()
		}
		out.Events = append(out.Events, &watchpostv1.EventRef{
			Seq: r.Seq, Type: watchpostv1.EventType(r.Kind), TimeUnixNano: ts, BootNs: r.BootNS, Pid: r.PID,
		})
	}
	return out
}

// DetectionToProto converts the rule engine's state.
func DetectionToProto(d *event.Detection) *watchpostv1.DetectionStatus {
	if d == nil {
		return nil
	}
	out := &watchpostv1.DetectionStatus{
		Rules: uint32(d.Rules), Generation: d.Generation, Errors: utf8SafeAll(d.Errors), Alerts: d.Alerts,
		Dropped: d.Dropped, Exceptions: uint32(d.Exceptions),
	}
	if !d.LoadedAt.IsZero() {
		out.LoadedAtUnixNano = d.LoadedAt.UnixNano()
	}
	out.Suppressed = ruleCounters(d.Suppressed, "suppressed")
	out.Folded = ruleCounters(d.Folded, "folded")
	return out
}

// ruleCounters turns counts by rule id into counters, by id.
func ruleCounters(byRule map[string]uint64, reason string) []*watchpostv1.Counter {
	ids := make([]string, 0, len(byRule))
	for id := range byRule {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []*watchpostv1.Counter
	for _, id := range ids {
		out = append(out, &watchpostv1.Counter{Kind: utf8Safe(id), Reason: reason, Count: byRule[id]})
	}
	return out
}

// HealthToProto converts the agent's self-report.
// ICSToProto converts an ics_op event's detail and its endpoints (n may be nil).
func ICSToProto(i *event.ICS, n *event.Net) *watchpostv1.Ics {
	out := &watchpostv1.Ics{
		Protocol: utf8Safe(i.Protocol), Role: i.Role, Class: i.Class, Function: utf8Safe(i.Function),
		Code: uint32(i.Code), Unit: uint32(i.Unit), Count: i.Count, Responses: i.Responses,
		FirstBootNs: i.FirstNS, LastBootNs: i.LastNS, RangesTruncated: i.RangesTruncated,
		Urgent: i.Urgent, Connection: i.Connection, Owner: i.Owner,
	}
	if !i.First.IsZero() {
		out.FirstUnixNano = i.First.UnixNano()
	}
	if !i.Last.IsZero() {
		out.LastUnixNano = i.Last.UnixNano()
	}
	for _, r := range i.Ranges {
		out.Ranges = append(out.Ranges, &watchpostv1.IcsRange{Address: uint32(r.Address), Count: r.Count})
	}
	for _, v := range i.Values {
		out.Values = append(out.Values, uint32(v))
	}
	for _, e := range i.Exceptions {
		out.Exceptions = append(out.Exceptions, &watchpostv1.IcsException{Code: uint32(e.Code), Name: utf8Safe(e.Name), Count: e.Count})
	}
	if n != nil {
		out.Family, out.Direction = n.Family, n.Direction
		out.SrcAddr, out.SrcPort, out.DstAddr, out.DstPort = n.SrcAddr, uint32(n.SrcPort), n.DstAddr, uint32(n.DstPort)
	}
	return out
}

// InspectionToProto converts the inspection's state (nil when it is off).
func InspectionToProto(s *event.Inspection) *watchpostv1.InspectionStatus {
	if s == nil {
		return nil
	}
	return &watchpostv1.InspectionStatus{
		Attached: s.Attached, Error: utf8Safe(s.Error), Cgroup: utf8Safe(s.Cgroup), Ports: s.Ports,
		Segments: s.Segments, Messages: s.Messages, Malformed: s.Malformed, Unparsed: s.Unparsed, NoOwner: s.NoOwner,
		Retransmitted: s.Retransmitted,
		Events:        s.Events, Urgent: s.Urgent, OwnerLookups: s.OwnerLookups, OwnerUnknown: s.OwnerUnknown,
		QueueFull: s.QueueFull, GroupsFull: s.GroupsFull,
	}
}

func HealthToProto(h *event.Health) *watchpostv1.Health {
	return &watchpostv1.Health{
		Version: utf8Safe(h.Version), Kernel: utf8Safe(h.Kernel), CapturePath: utf8Safe(h.CapturePath), Programs: utf8SafeAll(h.Programs),
		Produced: h.Produced, Delivered: h.Delivered, Filtered: h.Filtered, Dropped: h.Dropped,
		SpoolBytes: h.SpoolBytes, Counters: countersToProto(h.Counters), Detection: DetectionToProto(h.Detection),
		Baseline:   BaselineToProto(h.Baseline),
		Response:   PoliciesToProto(h.Response),
		Inspection: InspectionToProto(h.Inspection),
	}
}

// BaselineToProto converts the learned baseline's state.
func BaselineToProto(b *event.Baseline) *watchpostv1.BaselineStatus {
	if b == nil {
		return nil
	}
	out := &watchpostv1.BaselineStatus{Mode: b.Mode, LearnedNs: b.LearnedNS, PeriodNs: b.PeriodNS, Alerts: b.Alerts,
		Throttled: b.Throttled, LearnedUnder: b.LearnedUnder, Clocks: uint32(b.Clocks), SaveError: utf8Safe(b.SaveError), LoadError: utf8Safe(b.LoadError)}
	if !b.Since.IsZero() {
		out.SinceUnixNano = b.Since.UnixNano()
	}
	if !b.SavedAt.IsZero() {
		out.SavedUnixNano = b.SavedAt.UnixNano()
	}
	for _, f := range b.Families {
		out.Families = append(out.Families, &watchpostv1.BaselineFamily{Family: f.Family, Items: uint32(f.Items),
			Pending: uint32(f.Pending), Dropped: f.Dropped})
	}
	return out
}

func countersToProto(in []event.Counter) []*watchpostv1.Counter {
	if len(in) == 0 {
		return nil
	}
	out := make([]*watchpostv1.Counter, len(in))
	for i, c := range in {
		out[i] = &watchpostv1.Counter{Kind: utf8Safe(c.Kind), Reason: utf8Safe(c.Reason), Count: c.Count}
	}
	return out
}
