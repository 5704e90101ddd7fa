package web

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/watchpost/watchpost/collector/alerts"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// The overview answers "is anything wrong right now?".
const (
	// overviewAlerts bounds the open alerts counted.
	overviewAlerts = 1000
	// silentIntervals: an agent is silent after this many heartbeat
	// intervals without one (as the missed-heartbeat alert).
	silentIntervals = 3
	defaultInterval = 10 * time.Second
	// dropWindow: an agent is dropping when its health events show the
	// drop counter rising within this window.
	dropWindow = 10 * time.Minute
	// New industrial activity: seen in newWindow, not in the baseline
	// window before it.
	newWindow      = 24 * time.Hour
	baselineWindow = 7 * 24 * time.Hour
	// industrialCache: the industrial part is recomputed at most this often.
	industrialCache = time.Minute
)

// Host states on the overview, worst first.
const (
	hostSilent   = "silent"
	hostDropping = "dropping"
	hostDegraded = "degraded"
	hostStopped  = "stopped"
	hostOK       = "ok"
)

var hostRank = map[string]int{hostSilent: 0, hostDropping: 1, hostDegraded: 2, hostStopped: 3, hostOK: 4}

type hostHealth struct {
	AgentID    string   `json:"agent_id"`
	Host       string   `json:"host"`
	Status     string   `json:"status"`
	Reasons    []string `json:"reasons"`
	LastSeenNS string   `json:"last_seen_ns"`
	// DroppedRecent is the rise of the drop counter within dropWindow.
	DroppedRecent uint64 `json:"dropped_recent"`
	OpenAlerts    int    `json:"open_alerts"`
}

type alertsByHost struct {
	AgentID string         `json:"agent_id"`
	Host    string         `json:"host"`
	Counts  map[string]int `json:"counts"` // by severity name
	Total   int            `json:"total"`
	// Latest is the newest open alert of the agent.
	Latest json.RawMessage `json:"latest"`
}

type newIndustrial struct {
	SinceNS  string       `json:"since_ns"`
	Flows    []*flow      `json:"flows"`
	Devices  []*deviceUse `json:"devices"`
	Sniffers []*flow      `json:"sniffers"`
	// Truncated: the window or its baseline had more events than were
	// read; new means not among those read.
	Truncated bool `json:"truncated"`
}

type overviewView struct {
	NowNS string `json:"now_ns"`
	Open  struct {
		Total      int            `json:"total"`
		More       bool           `json:"more"`
		BySeverity map[string]int `json:"by_severity"`
		ByHost     []alertsByHost `json:"by_host"`
	} `json:"open_alerts"`
	Hosts struct {
		Total  int            `json:"total"`
		Counts map[string]int `json:"counts"` // by status
		// Attention: every host that is not ok, worst first.
		Attention []hostHealth `json:"attention"`
		// DropsTruncated: more health events than were read.
		DropsTruncated bool `json:"drops_truncated"`
	} `json:"hosts"`
	Industrial newIndustrial `json:"industrial"`
}

// industrialMemo holds the last computed new industrial activity.
type industrialMemo struct {
	mu   sync.Mutex
	at   time.Time
	view newIndustrial
}

// fleet is every agent's health with the open alerts behind it.
type fleet struct {
	hosts     []*watchpostv1.HostInfo
	health    map[string]hostHealth // by agent id
	open      []*watchpostv1.Alert  // newest first
	openMore  bool
	openKinds map[string]map[watchpostv1.AlertKind]int // by agent id
	dropsMore bool
}

func (d *Dashboard) fleet(ctx context.Context, now time.Time) (fleet, error) {
	var fl fleet
	open, err := d.deps.Query.ListAlerts(ctx, &watchpostv1.ListAlertsRequest{
		States: []watchpostv1.AlertState{watchpostv1.AlertState_ALERT_STATE_OPEN}, Limit: uint32(min(overviewAlerts, d.cfg.MaxLimit)),
	})
	if err != nil {
		return fl, err
	}
	fl.open, fl.openMore = open.GetAlerts(), open.GetTruncated()
	fl.openKinds = map[string]map[watchpostv1.AlertKind]int{}
	for _, a := range fl.open {
		if fl.openKinds[a.GetAgentId()] == nil {
			fl.openKinds[a.GetAgentId()] = map[watchpostv1.AlertKind]int{}
		}
		fl.openKinds[a.GetAgentId()][a.GetKind()]++
	}
	hosts, err := d.deps.Query.ListHosts(ctx, &watchpostv1.ListHostsRequest{})
	if err != nil {
		return fl, err
	}
	drops, dropsMore, err := d.recentDrops(ctx, now)
	if err != nil {
		return fl, err
	}
	fl.hosts, fl.dropsMore = hosts.GetHosts(), dropsMore
	fl.health = make(map[string]hostHealth, len(fl.hosts))
	for _, h := range fl.hosts {
		fl.health[h.GetAgentId()] = judgeHost(h, now, drops[h.GetAgentId()], fl.openKinds[h.GetAgentId()])
	}
	return fl, nil
}

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	fl, err := d.fleet(r.Context(), now)
	if err != nil {
		d.queryError(w, err)
		return
	}
	var out overviewView
	out.NowNS = strconv.FormatInt(now.UnixNano(), 10)
	out.Open.Total, out.Open.More = len(fl.open), fl.openMore
	out.Open.BySeverity = map[string]int{}
	for v := watchpostv1.Severity_SEVERITY_INFO; v <= watchpostv1.Severity_SEVERITY_CRITICAL; v++ {
		out.Open.BySeverity[alerts.SeverityName(v)] = 0
	}
	byAgent := map[string]*alertsByHost{}
	for _, a := range fl.open { // newest first
		out.Open.BySeverity[alerts.SeverityName(a.GetSeverity())]++
		h := byAgent[a.GetAgentId()]
		if h == nil {
			h = &alertsByHost{AgentID: a.GetAgentId(), Host: a.GetHost(), Counts: map[string]int{}, Latest: raw(a)}
			byAgent[a.GetAgentId()] = h
		}
		h.Counts[alerts.SeverityName(a.GetSeverity())]++
		h.Total++
	}
	out.Open.ByHost = []alertsByHost{}
	for _, h := range byAgent {
		out.Open.ByHost = append(out.Open.ByHost, *h)
	}
	sev := func(h alertsByHost) []int {
		return []int{h.Counts["critical"], h.Counts["high"], h.Counts["medium"], h.Counts["low"], h.Counts["info"], h.Total}
	}
	slices.SortFunc(out.Open.ByHost, func(a, b alertsByHost) int {
		return cmp.Or(-slices.Compare(sev(a), sev(b)), cmp.Compare(a.Host, b.Host), cmp.Compare(a.AgentID, b.AgentID))
	})

	out.Hosts.Total, out.Hosts.DropsTruncated = len(fl.hosts), fl.dropsMore
	out.Hosts.Counts = map[string]int{hostSilent: 0, hostDropping: 0, hostDegraded: 0, hostStopped: 0, hostOK: 0}
	out.Hosts.Attention = []hostHealth{}
	for _, h := range fl.hosts {
		hh := fl.health[h.GetAgentId()]
		out.Hosts.Counts[hh.Status]++
		if hh.Status != hostOK {
			out.Hosts.Attention = append(out.Hosts.Attention, hh)
		}
	}
	slices.SortStableFunc(out.Hosts.Attention, func(a, b hostHealth) int {
		return cmp.Or(cmp.Compare(hostRank[a.Status], hostRank[b.Status]), cmp.Compare(a.Host, b.Host))
	})

	if out.Industrial, err = d.newIndustrial(r.Context(), now); err != nil {
		d.queryError(w, err)
		return
	}
	writeJSON(w, out)
}

// judgeHost gives an agent its overview status and the reasons for it.
func judgeHost(h *watchpostv1.HostInfo, now time.Time, droppedRecent uint64, openKinds map[watchpostv1.AlertKind]int) hostHealth {
	hh := hostHealth{AgentID: h.GetAgentId(), Host: h.GetHost(), Reasons: []string{}, DroppedRecent: droppedRecent,
		LastSeenNS: strconv.FormatInt(h.GetLastSeenUnixNano(), 10)}
	for _, n := range openKinds {
		hh.OpenAlerts += n
	}
	interval := time.Duration(h.GetHeartbeatIntervalNanos())
	if interval <= 0 {
		interval = defaultInterval
	}
	age := now.Sub(time.Unix(0, h.GetLastSeenUnixNano()))
	quiet := h.GetLastSeenUnixNano() == 0 || age >= silentIntervals*interval
	var silent, stopped, dropping, degraded bool
	switch {
	case quiet && h.GetStopped():
		stopped = true
		hh.Reasons = append(hh.Reasons, "stopped cleanly "+age.Round(time.Second).String()+" ago")
	case h.GetLastSeenUnixNano() == 0:
		silent = true
		hh.Reasons = append(hh.Reasons, "no heartbeat ever received")
	case quiet:
		silent = true
		hh.Reasons = append(hh.Reasons, "no heartbeat for "+age.Round(time.Second).String())
	}
	if droppedRecent > 0 {
		dropping = true
		hh.Reasons = append(hh.Reasons, strconv.FormatUint(droppedRecent, 10)+" events dropped in the last "+dropWindow.String())
	}
	if n := openKinds[watchpostv1.AlertKind_ALERT_KIND_DROP_JUMP]; n > 0 {
		dropping = true
		hh.Reasons = append(hh.Reasons, strconv.Itoa(n)+" open drop_jump alerts")
	}
	for _, k := range []watchpostv1.AlertKind{watchpostv1.AlertKind_ALERT_KIND_PROGRAMS_DETACHED, watchpostv1.AlertKind_ALERT_KIND_SEQUENCE_GAP,
		watchpostv1.AlertKind_ALERT_KIND_UNCLEAN_RESTART, watchpostv1.AlertKind_ALERT_KIND_MISSED_HEARTBEAT} {
		if n := openKinds[k]; n > 0 {
			degraded = true
			hh.Reasons = append(hh.Reasons, strconv.Itoa(n)+" open "+alerts.KindName(k)+" alerts")
		}
	}
	if !quiet && h.GetSpoolBytes() > 0 {
		degraded = true
		hh.Reasons = append(hh.Reasons, strconv.FormatUint(h.GetSpoolBytes(), 10)+" bytes waiting in the spool")
	}
	if !quiet && h.GetLastSeenUnixNano() != 0 && len(h.GetPrograms()) == 0 {
		degraded = true
		hh.Reasons = append(hh.Reasons, "no kernel program attached")
	}
	switch {
	case silent:
		hh.Status = hostSilent
	case dropping:
		hh.Status = hostDropping
	case degraded:
		hh.Status = hostDegraded
	case stopped:
		hh.Status = hostStopped
	default:
		hh.Status = hostOK
	}
	return hh
}

// recentDrops is each agent's drop counter rise within dropWindow, from
// its health events (a counter that went back, a restart, counts from 0).
func (d *Dashboard) recentDrops(ctx context.Context, now time.Time) (map[string]uint64, bool, error) {
	resp, err := d.deps.Query.QueryEvents(ctx, &watchpostv1.QueryEventsRequest{
		Filter: &watchpostv1.EventFilter{Types: []watchpostv1.EventType{watchpostv1.EventType_EVENT_TYPE_HEALTH},
			SinceUnixNano: now.Add(-dropWindow).UnixNano()},
		Limit: uint32(min(industrialRead, d.cfg.MaxLimit)),
	})
	if err != nil {
		return nil, false, err
	}
	last := map[string]uint64{}
	seen := map[string]bool{}
	rise := map[string]uint64{}
	for _, ev := range resp.GetEvents() { // oldest first
		id, n := ev.GetHeader().GetAgentId(), ev.GetHealth().GetDropped()
		switch {
		case !seen[id]:
			seen[id] = true
		case n >= last[id]:
			rise[id] += n - last[id]
		default:
			rise[id] += n
		}
		last[id] = n
	}
	return rise, resp.GetTruncated(), nil
}

// newIndustrial is the industrial activity of the last newWindow that the
// baseline window before it did not have: process, protocol and peer
// flows, fieldbus devices opened by a process, sniffing sockets.
func (d *Dashboard) newIndustrial(ctx context.Context, now time.Time) (newIndustrial, error) {
	d.memo.mu.Lock()
	defer d.memo.mu.Unlock()
	if !d.memo.at.IsZero() && now.Sub(d.memo.at) < industrialCache {
		return d.memo.view, nil
	}
	since := now.Add(-newWindow)
	cur, err := d.readIndustrial(ctx, &watchpostv1.EventFilter{SinceUnixNano: since.UnixNano()})
	if err != nil {
		return newIndustrial{}, err
	}
	base, err := d.readIndustrial(ctx, &watchpostv1.EventFilter{SinceUnixNano: since.Add(-baselineWindow).UnixNano(), UntilUnixNano: since.UnixNano() - 1})
	if err != nil {
		return newIndustrial{}, err
	}
	known := map[string]bool{}
	for _, f := range slices.Concat(base.Flows, base.Sniffers) {
		known[f.key()] = true
	}
	for _, u := range base.Devices {
		known[u.key()] = true
	}
	view := newIndustrial{SinceNS: strconv.FormatInt(since.UnixNano(), 10), Flows: []*flow{}, Devices: []*deviceUse{}, Sniffers: []*flow{},
		Truncated: cur.NetTruncated || cur.FileTruncated || base.NetTruncated || base.FileTruncated}
	for _, f := range cur.Flows {
		if !known[f.key()] {
			view.Flows = append(view.Flows, f)
		}
	}
	for _, f := range cur.Sniffers {
		if !known[f.key()] {
			view.Sniffers = append(view.Sniffers, f)
		}
	}
	for _, u := range cur.Devices {
		if !known[u.key()] {
			view.Devices = append(view.Devices, u)
		}
	}
	d.memo.at, d.memo.view = now, view
	return view, nil
}

func (f *flow) key() string {
	return f.Host + "\x00" + f.Exe + "\x00" + f.Comm + "\x00" + f.Protocol + "\x00" + f.Peer + "\x00" + f.Direction + "\x00" + strconv.FormatUint(uint64(f.Port), 10)
}

func (u *deviceUse) key() string {
	return u.Host + "\x00" + u.Exe + "\x00" + u.Comm + "\x00dev\x00" + u.Device + "\x00" + u.Fieldbus
}
