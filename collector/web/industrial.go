package web

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/watchpost/watchpost/collector/filter"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// actor is the process side of a row: enough to link to the process view.
type actor struct {
	Host        string `json:"host"`
	Exe         string `json:"exe"`
	Comm        string `json:"comm"`
	PID         uint32 `json:"pid"` // the most recent process seen
	StartBootNS string `json:"start_boot_ns"`
	BootID      string `json:"boot_id"`
}

// flow is one process talking one industrial protocol with one peer.
type flow struct {
	actor
	Protocol  string `json:"protocol"`
	Peer      string `json:"peer"`       // the remote address
	Port      uint32 `json:"port"`       // the protocol's port (the peer's when outbound, ours when inbound)
	Direction string `json:"direction"`  // outbound, inbound, or "" (sockets, listeners)
	Events    uint64 `json:"events"`     // matching net events
	BytesSent uint64 `json:"bytes_sent"` // summed over closed connections and UDP flows
	BytesRecv uint64 `json:"bytes_recv"`
	FirstNS   string `json:"first_ns"`
	LastNS    string `json:"last_ns"`
}

// deviceUse is one process opening one fieldbus device.
type deviceUse struct {
	actor
	Fieldbus string `json:"fieldbus"`
	Device   string `json:"device"`
	Opens    uint64 `json:"opens"`
	Writes   uint64 `json:"writes"` // opened for writing
	Failed   uint64 `json:"failed"` // the open failed
	FirstNS  string `json:"first_ns"`
	LastNS   string `json:"last_ns"`
}

type industrialView struct {
	Flows   []*flow      `json:"flows"`
	Devices []*deviceUse `json:"devices"`
	// Sniffers opened packet or raw sockets (T0842).
	Sniffers []*flow `json:"sniffers"`
	// Truncated: more events matched than were read; the view covers the
	// most recent ones.
	NetTruncated  bool `json:"net_truncated"`
	FileTruncated bool `json:"file_truncated"`
}

func actorOf(ev *watchpostv1.Event) actor {
	p, h := ev.GetProcess(), ev.GetHeader()
	return actor{Host: h.GetHost(), Exe: p.GetExe(), Comm: p.GetComm(), PID: p.GetPid(),
		StartBootNS: strconv.FormatUint(p.GetStartBootNs(), 10), BootID: h.GetBootId()}
}

// industrial aggregates the window's (host, since, until) tagged network
// events and fieldbus device opens by process.
func (d *Dashboard) industrial(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	base, err := parseFilter(v)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if base.SinceUnixNano == 0 {
		base.SinceUnixNano, _ = filter.ParseTime("24h", time.Now())
	}
	view, err := d.readIndustrial(r.Context(), base)
	if err != nil {
		d.queryError(w, err)
		return
	}
	writeJSON(w, view)
}

// readIndustrial reads the window's (host, protocol, since, until) most
// recent network events and /dev/ opens and aggregates them.
func (d *Dashboard) readIndustrial(ctx context.Context, base *watchpostv1.EventFilter) (industrialView, error) {
	limit := uint32(min(industrialRead, d.cfg.MaxLimit))
	netTypes, _ := filter.ParseTypes("net_*")
	nf := &watchpostv1.EventFilter{Host: base.Host, Protocol: base.Protocol, Types: netTypes, SinceUnixNano: base.SinceUnixNano, UntilUnixNano: base.UntilUnixNano}
	nr, err := d.deps.Query.QueryEvents(ctx, &watchpostv1.QueryEventsRequest{Filter: nf, Limit: limit})
	if err != nil {
		return industrialView{}, err
	}
	ff := &watchpostv1.EventFilter{Host: base.Host, Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_FILE_OPEN},
		PathPrefix: "/dev/", SinceUnixNano: base.SinceUnixNano, UntilUnixNano: base.UntilUnixNano}
	fr, err := d.deps.Query.QueryEvents(ctx, &watchpostv1.QueryEventsRequest{Filter: ff, Limit: limit})
	if err != nil {
		return industrialView{}, err
	}
	return aggregateIndustrial(nr.GetEvents(), fr.GetEvents(), nr.GetTruncated(), fr.GetTruncated()), nil
}

func aggregateIndustrial(netEvs, fileEvs []*watchpostv1.Event, netTrunc, fileTrunc bool) industrialView {
	type flowKey struct {
		host, exe, proto, peer, dir string
		port                        uint32
		sniff                       bool
	}
	type devKey struct{ host, exe, device, bus string }
	flows := map[flowKey]*flow{}
	devs := map[devKey]*deviceUse{}
	view := industrialView{Flows: []*flow{}, Devices: []*deviceUse{}, Sniffers: []*flow{}, NetTruncated: netTrunc, FileTruncated: fileTrunc}
	for _, ev := range netEvs { // oldest first: the last one seen is the most recent
		ind, n := ev.GetIndustrial(), ev.GetNet()
		if ind.GetProtocol() == "" && !ind.GetSniffing() {
			continue
		}
		port := n.GetDstPort()
		if n.GetDirection() == "inbound" {
			port = n.GetSrcPort()
		}
		a := actorOf(ev)
		k := flowKey{a.Host, a.Exe + "\x00" + a.Comm, ind.GetProtocol(), n.GetDstAddr(), n.GetDirection(), port, ind.GetSniffing()}
		if ind.GetSniffing() {
			k.peer, k.port, k.dir, k.proto = "", 0, "", n.GetFamily()+"/"+n.GetProtocol()
		}
		f := flows[k]
		if f == nil {
			f = &flow{Protocol: k.proto, Peer: k.peer, Port: k.port, Direction: k.dir, FirstNS: strconv.FormatInt(ev.GetHeader().GetTimeUnixNano(), 10)}
			flows[k] = f
			if k.sniff {
				view.Sniffers = append(view.Sniffers, f)
			} else {
				view.Flows = append(view.Flows, f)
			}
		}
		f.actor = a
		f.Events++
		f.BytesSent += n.GetBytesSent()
		f.BytesRecv += n.GetBytesRecv()
		f.LastNS = strconv.FormatInt(ev.GetHeader().GetTimeUnixNano(), 10)
	}
	for _, ev := range fileEvs {
		ind, fl := ev.GetIndustrial(), ev.GetFile()
		if ind.GetFieldbus() == "" {
			continue
		}
		a := actorOf(ev)
		k := devKey{a.Host, a.Exe + "\x00" + a.Comm, ind.GetDevice(), ind.GetFieldbus()}
		u := devs[k]
		if u == nil {
			u = &deviceUse{Fieldbus: k.bus, Device: k.device, FirstNS: strconv.FormatInt(ev.GetHeader().GetTimeUnixNano(), 10)}
			devs[k] = u
			view.Devices = append(view.Devices, u)
		}
		u.actor = a
		u.Opens++
		if fl.GetWrite() {
			u.Writes++
		}
		if fl.GetResult() < 0 {
			u.Failed++
		}
		u.LastNS = strconv.FormatInt(ev.GetHeader().GetTimeUnixNano(), 10)
	}
	byActor := func(a, b actor) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Exe, b.Exe), cmp.Compare(a.Comm, b.Comm))
	}
	slices.SortStableFunc(view.Flows, func(a, b *flow) int {
		return cmp.Or(byActor(a.actor, b.actor), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Peer, b.Peer), cmp.Compare(a.Port, b.Port))
	})
	slices.SortStableFunc(view.Devices, func(a, b *deviceUse) int {
		return cmp.Or(byActor(a.actor, b.actor), cmp.Compare(a.Device, b.Device))
	})
	slices.SortStableFunc(view.Sniffers, func(a, b *flow) int { return byActor(a.actor, b.actor) })
	return view
}
