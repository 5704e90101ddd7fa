package store

import (
	"bytes"
	"path"
	"strings"

	"google.golang.org/protobuf/proto"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Match reports whether ev matches f, with the same meaning as Query (used
// for live tails). raw is the event's serialized form for the text filter;
// nil serializes ev when needed.
func Match(f *Filter, ev *watchpostv1.Event, raw []byte) bool {
	h, p := ev.GetHeader(), ev.GetProcess()
	switch {
	case f.AgentID != "" && h.GetAgentId() != f.AgentID,
		f.Host != "" && h.GetHost() != f.Host,
		!f.Since.IsZero() && h.GetTimeUnixNano() < f.Since.UnixNano(),
		!f.Until.IsZero() && h.GetTimeUnixNano() > f.Until.UnixNano(),
		f.PID != 0 && p.GetPid() != f.PID,
		f.Protocol != "" && ev.GetIndustrial().GetProtocol() != f.Protocol:
		return false
	}
	if len(f.Types) > 0 {
		ok := false
		for _, t := range f.Types {
			ok = ok || t == h.GetType()
		}
		if !ok {
			return false
		}
	}
	if f.Exe != "" {
		exe := p.GetExe()
		base := "/" + path.Base(f.Exe)
		if exe != f.Exe && p.GetComm() != f.Exe && !(len(exe) > len(base) && strings.HasSuffix(exe, base)) {
			return false
		}
	}
	if f.PathPrefix != "" {
		var p1, p2 string
		switch d := ev.Detail.(type) {
		case *watchpostv1.Event_File:
			p1, p2 = d.File.Path, d.File.NewPath
		case *watchpostv1.Event_Security:
			p1 = d.Security.Path
		}
		if !strings.HasPrefix(p1, f.PathPrefix) && !strings.HasPrefix(p2, f.PathPrefix) {
			return false
		}
	}
	if f.Port != 0 {
		n := ev.GetNet()
		if n.GetSrcPort() != f.Port && n.GetDstPort() != f.Port {
			return false
		}
	}
	if f.Text != "" {
		if raw == nil {
			raw, _ = proto.Marshal(ev)
		}
		if !bytes.Contains(raw, []byte(f.Text)) {
			return false
		}
	}
	return true
}
