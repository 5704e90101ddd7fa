package shipper

import (
	"maps"
	"time"

	"github.com/watchpost/watchpost/agent/event"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// FromProto is ToProto's inverse: the agent's event for a stored one, so
// that the CLI prints stored events in the agent's JSON schema
// (event.AppendJSON), one schema for both. What only the collector knows
// (agent id, boot id, a clamped time, a claimed host) is not part of the
// agent's event; the caller adds it. An ics_op's endpoints come back as
// its TCP flow.
func FromProto(pb *watchpostv1.Event) *event.Event {
	h := pb.GetHeader()
	ev := &event.Event{
		Kind: event.Kind(h.GetType()), Time: unixNano(h.GetTimeUnixNano()), BootNS: h.GetBootNs(), Seq: h.GetSeq(),
		Host: h.GetHost(), CPU: h.GetCpu(),
	}
	for _, t := range h.GetTruncated() {
		ev.Truncated = append(ev.Truncated, event.Truncation{Field: t.GetField(), Entries: t.GetEntries(), Bytes: t.GetBytes()})
	}
	p := pb.GetProcess()
	ev.Process = event.Process{
		PID: p.GetPid(), TID: p.GetTid(), PPID: p.GetPpid(),
		UID: p.GetUid(), GID: p.GetGid(), EUID: p.GetEuid(), EGID: p.GetEgid(), LoginUID: event.AUIDUnset,
		SessionID: p.GetSessionId(), CgroupID: p.GetCgroupId(),
		Comm: p.GetComm(), Exe: p.GetExe(), Args: p.GetArgs(), Cwd: p.GetCwd(), TTY: p.GetTty(), StartBootNS: p.GetStartBootNs(),
		Container: p.GetContainer(), ContainerRuntime: p.GetContainerRuntime(), ContainerImage: p.GetContainerImage(),
		ContainerName: p.GetContainerName(), PodName: p.GetPodName(), PodNamespace: p.GetPodNamespace(),
	}
	if p.Auid != nil {
		ev.Process.LoginUID = event.AUID(p.GetAuid())
	}
	for _, a := range pb.GetAncestry() {
		ev.Ancestry = append(ev.Ancestry, event.Ancestor{PID: a.GetPid(), Comm: a.GetComm(), Exe: a.GetExe(), Args: a.GetArgs(), UID: a.GetUid()})
	}
	if in := pb.GetIndustrial(); in != nil {
		ev.Industrial = &event.Industrial{Protocol: in.GetProtocol(), Fieldbus: in.GetFieldbus(), Device: in.GetDevice(), Sniffing: in.GetSniffing()}
	}
	switch d := pb.GetDetail().(type) {
	case *watchpostv1.Event_Ics:
		ev.ICS, ev.Net = icsFromProto(d.Ics)
	case *watchpostv1.Event_Exec:
		x := d.Exec
		ev.Exec = &event.Exec{
			ArgsTruncated: x.GetArgsTruncated(), ExeTruncated: x.GetExeTruncated(), Argc: x.GetArgc(), ExeInode: x.GetExeInode(),
			ExeDev: x.GetExeDev(), Env: x.GetEnv(), EnvDuplicates: x.GetEnvDuplicates(), EnvTruncated: x.GetEnvTruncated(), Envc: x.GetEnvc(),
		}
	case *watchpostv1.Event_Clone:
		c := d.Clone
		ev.Clone = &event.Clone{ChildPID: c.GetChildPid(), ChildTID: c.GetChildTid(), Thread: c.GetThread()}
	case *watchpostv1.Event_Exit:
		x := d.Exit
		ev.Exit = &event.Exit{Code: int(x.GetCode()), Signal: int(x.GetSignal()), CoreDumped: x.GetCoreDumped(), LifetimeNS: x.GetLifetimeNs()}
	case *watchpostv1.Event_File:
		f := d.File
		ev.File = &event.File{
			Syscall: f.GetSyscall(), Path: f.GetPath(), NewPath: f.GetNewPath(), PathTruncated: f.GetPathTruncated(), Watched: f.GetWatched(),
			Flags: f.GetFlags(), Mode: f.GetMode(), Write: f.GetWrite(), Result: f.GetResult(), Errno: f.GetErrno(), Inode: f.GetInode(),
			Dev: f.GetDev(), RDev: f.GetRdev(), DevKind: f.GetDevKind(), UID: f.GetOwnerUid(), GID: f.GetOwnerGid(), Size: f.GetSize(),
		}
	case *watchpostv1.Event_Net:
		n := d.Net
		ev.Net = &event.Net{
			Syscall: n.GetSyscall(), Family: n.GetFamily(), Protocol: n.GetProtocol(), SockType: n.GetSockType(),
			SrcAddr: n.GetSrcAddr(), SrcPort: uint16(n.GetSrcPort()), DstAddr: n.GetDstAddr(), DstPort: uint16(n.GetDstPort()),
			Result: n.GetResult(), Errno: n.GetErrno(), BytesSent: n.GetBytesSent(), BytesRecv: n.GetBytesRecv(), DurationNS: n.GetDurationNs(),
			Direction: n.GetDirection(), State: n.GetState(), Interface: n.GetInterface(), Zone: n.GetZone(), PeerZone: n.GetPeerZone(),
		}
	case *watchpostv1.Event_Security:
		s := d.Security
		ev.Security = &event.Security{
			Operation: s.GetOperation(), TargetPID: s.GetTargetPid(), TargetComm: s.GetTargetComm(), TargetExe: s.GetTargetExe(),
			TargetArgs: s.GetTargetArgs(), TargetUID: s.TargetUid, Signal: int(s.GetSignal()), Name: s.GetName(), Path: s.GetPath(),
			FSType: s.GetFsType(), OldID: s.OldId, NewID: s.NewId, Requested: s.GetRequested(), Flags: s.GetFlags(),
			Params: s.GetParams(), Result: s.GetResult(), Errno: s.GetErrno(),
		}
	case *watchpostv1.Event_Namespace:
		n := d.Namespace
		ev.Namespace = &event.Namespace{
			Operation: n.GetOperation(), Namespaces: n.GetNamespaces(), Flags: n.GetFlags(), Inodes: n.GetInodes(),
			TargetInode: n.GetTargetInode(), TargetPID: n.GetTargetPid(), Result: n.GetResult(), Errno: n.GetErrno(),
		}
	case *watchpostv1.Event_Health:
		ev.Health = healthFromProto(d.Health)
	case *watchpostv1.Event_Gap:
		ev.Gap = &event.Gap{Reason: d.Gap.GetReason(), Counters: countersFromProto(d.Gap.GetCounters())}
	case *watchpostv1.Event_Alert:
		ev.Alert = alertFromProto(d.Alert)
	case *watchpostv1.Event_NetInterface:
		n := d.NetInterface
		ev.Interface = &event.NetInterface{
			Action: n.GetAction(), Index: n.GetIndex(), Name: n.GetName(), Type: n.GetType(), MAC: n.GetMac(), MTU: n.GetMtu(),
			Up: n.GetUp(), OperState: n.GetOperState(), Zone: n.GetZone(), Addresses: n.GetAddresses(),
			Address: n.GetAddress(), AddressZone: n.GetAddressZone(), Changed: n.GetChanged(), PreviousName: n.GetPreviousName(),
		}
	case *watchpostv1.Event_Tamper:
		t := d.Tamper
		ev.Tamper = &event.Tamper{What: t.GetWhat(), File: t.GetFile(), Action: t.GetAction(), Error: t.GetError()}
	case *watchpostv1.Event_Response:
		r := d.Response
		ev.Response = &event.Response{
			Policy: r.GetPolicy(), Action: r.GetAction(), Mode: r.GetMode(), Outcome: r.GetOutcome(), Error: r.GetError(),
			Exe: r.GetExe(), Family: r.GetFamily(), Protocol: r.GetProtocol(), SockType: r.GetSockType(), DstAddr: r.GetDstAddr(),
			DstPort: uint16(r.GetDstPort()), Send: r.GetSend(), DevKind: r.GetDevKind(), Device: r.GetDevice(), Access: r.GetAccess(),
			RuleID: r.GetRuleId(), Targets: r.GetTargets(), Group: r.GetGroup(),
		}
	case *watchpostv1.Event_Policies:
		ev.Policies = policiesFromProto(d.Policies)
	}
	return ev
}

// unixNano is a time from nanoseconds since the epoch; 0 is the zero time,
// as ToProto writes it.
func unixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func icsFromProto(i *watchpostv1.Ics) (*event.ICS, *event.Net) {
	out := &event.ICS{
		Protocol: i.GetProtocol(), Role: i.GetRole(), Class: i.GetClass(), Function: i.GetFunction(),
		Code: uint8(i.GetCode()), Unit: uint8(i.GetUnit()), Count: i.GetCount(), Responses: i.GetResponses(),
		FirstNS: i.GetFirstBootNs(), LastNS: i.GetLastBootNs(), First: unixNano(i.GetFirstUnixNano()), Last: unixNano(i.GetLastUnixNano()),
		RangesTruncated: i.GetRangesTruncated(), Urgent: i.GetUrgent(), Connection: i.GetConnection(), Owner: i.GetOwner(),
	}
	for _, r := range i.GetRanges() {
		out.Ranges = append(out.Ranges, event.ICSRange{Address: uint16(r.GetAddress()), Count: r.GetCount()})
	}
	for _, v := range i.GetValues() {
		out.Values = append(out.Values, uint16(v))
	}
	for _, e := range i.GetExceptions() {
		out.Exceptions = append(out.Exceptions, event.ICSException{Code: uint8(e.GetCode()), Name: e.GetName(), Count: e.GetCount()})
	}
	if i.GetFamily() == "" && i.GetSrcAddr() == "" && i.GetDstAddr() == "" {
		return out, nil
	}
	return out, &event.Net{Family: i.GetFamily(), Protocol: "tcp", Direction: i.GetDirection(),
		SrcAddr: i.GetSrcAddr(), SrcPort: uint16(i.GetSrcPort()), DstAddr: i.GetDstAddr(), DstPort: uint16(i.GetDstPort())}
}

func healthFromProto(h *watchpostv1.Health) *event.Health {
	return &event.Health{
		Version: h.GetVersion(), Kernel: h.GetKernel(), CapturePath: h.GetCapturePath(), Programs: h.GetPrograms(),
		Produced: h.GetProduced(), Delivered: h.GetDelivered(), Filtered: h.GetFiltered(), Dropped: h.GetDropped(),
		SpoolBytes: h.GetSpoolBytes(), Counters: countersFromProto(h.GetCounters()), Detection: detectionFromProto(h.GetDetection()),
		Baseline: baselineFromProto(h.GetBaseline()), Response: policiesFromProto(h.GetResponse()),
		Inspection: inspectionFromProto(h.GetInspection()),
	}
}

func detectionFromProto(d *watchpostv1.DetectionStatus) *event.Detection {
	if d == nil {
		return nil
	}
	return &event.Detection{
		Rules: int(d.GetRules()), Generation: d.GetGeneration(), LoadedAt: unixNano(d.GetLoadedAtUnixNano()), Errors: d.GetErrors(),
		Alerts: d.GetAlerts(), Suppressed: ruleCountsFromProto(d.GetSuppressed()), Folded: ruleCountsFromProto(d.GetFolded()),
		Dropped: d.GetDropped(), Exceptions: int(d.GetExceptions()),
	}
}

// ruleCountsFromProto is ruleCounters' inverse: counts by rule id.
func ruleCountsFromProto(cs []*watchpostv1.Counter) map[string]uint64 {
	if len(cs) == 0 {
		return nil
	}
	out := make(map[string]uint64, len(cs))
	for _, c := range cs {
		out[c.GetKind()] += c.GetCount()
	}
	return out
}

func baselineFromProto(b *watchpostv1.BaselineStatus) *event.Baseline {
	if b == nil {
		return nil
	}
	out := &event.Baseline{
		Mode: b.GetMode(), LearnedNS: b.GetLearnedNs(), PeriodNS: b.GetPeriodNs(), Since: unixNano(b.GetSinceUnixNano()),
		Alerts: b.GetAlerts(), Throttled: b.GetThrottled(), LearnedUnder: b.GetLearnedUnder(), Clocks: int(b.GetClocks()),
		SavedAt: unixNano(b.GetSavedUnixNano()), SaveError: b.GetSaveError(), LoadError: b.GetLoadError(),
	}
	for _, f := range b.GetFamilies() {
		out.Families = append(out.Families, event.BaselineFamily{Family: f.GetFamily(), Items: int(f.GetItems()),
			Pending: int(f.GetPending()), Dropped: f.GetDropped()})
	}
	return out
}

func policiesFromProto(p *watchpostv1.Policies) *event.Policies {
	if p == nil {
		return nil
	}
	out := &event.Policies{File: p.GetFile(), Generation: p.GetGeneration(), LoadedAt: unixNano(p.GetLoadedAtUnixNano()),
		Source: p.GetSource(), Errors: p.GetErrors(), Enforcing: p.GetEnforcing()}
	for _, s := range p.GetPolicies() {
		out.Policies = append(out.Policies, event.PolicyStatus{ID: s.GetId(), Action: s.GetAction(), Mode: s.GetMode(),
			Unenforceable: s.GetUnenforceable(), Acted: s.GetActed(), WouldHave: s.GetWouldHave(), Failed: s.GetFailed()})
	}
	return out
}

func inspectionFromProto(s *watchpostv1.InspectionStatus) *event.Inspection {
	if s == nil {
		return nil
	}
	return &event.Inspection{
		Attached: s.GetAttached(), Error: s.GetError(), Cgroup: s.GetCgroup(), Ports: s.GetPorts(),
		Segments: s.GetSegments(), Messages: s.GetMessages(), Malformed: maps.Clone(s.GetMalformed()), Unparsed: s.GetUnparsed(),
		NoOwner: s.GetNoOwner(), Retransmitted: s.GetRetransmitted(), Events: s.GetEvents(), Urgent: s.GetUrgent(),
		OwnerLookups: s.GetOwnerLookups(), OwnerUnknown: s.GetOwnerUnknown(), QueueFull: s.GetQueueFull(), GroupsFull: s.GetGroupsFull(),
	}
}

func alertFromProto(a *watchpostv1.DetectionAlert) *event.Alert {
	out := &event.Alert{
		RuleID: a.GetRuleId(), Title: a.GetTitle(), Level: a.GetLevel(), Techniques: a.GetTechniques(), Tags: a.GetTags(),
		Source: a.GetSource(), Correlation: a.GetCorrelation(), Count: a.GetCount(), Cgroup: a.GetCgroup(), Folded: a.GetFolded(),
	}
	if an := a.GetBaseline(); an != nil {
		out.Baseline = &event.Anomaly{Family: an.GetFamily(), Item: an.GetItem(), Known: an.GetKnown(),
			KnownCount: int(an.GetKnownCount()), LearnedNS: an.GetLearnedNs(), Also: an.GetAlso()}
	}
	for _, m := range a.GetMatches() {
		out.Matches = append(out.Matches, event.Match{Field: m.GetField(), Value: m.GetValue()})
	}
	for _, r := range a.GetEvents() {
		out.Events = append(out.Events, event.EventRef{Seq: r.GetSeq(), Kind: event.Kind(r.GetType()), Time: unixNano(r.GetTimeUnixNano()),
			BootNS: r.GetBootNs(), PID: r.GetPid()})
	}
	return out
}

func countersFromProto(in []*watchpostv1.Counter) []event.Counter {
	if len(in) == 0 {
		return nil
	}
	out := make([]event.Counter, len(in))
	for i, c := range in {
		out[i] = event.Counter{Kind: c.GetKind(), Reason: c.GetReason(), Count: c.GetCount()}
	}
	return out
}
