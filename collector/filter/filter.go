// Package filter parses the query filters shared by the CLI flags and the
// HTTP/JSON API into the protobuf EventFilter.
package filter

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/watchpost/watchpost/proto/eventtype"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// Params are the textual filter values, named as the HTTP query parameters
// and the CLI flags.
type Params struct {
	Agent    string // agent
	Host     string // host
	Types    string // type: comma-separated names (exec,file_open) or prefixes ending in * (file_*)
	PID      string // pid
	Exe      string // exe
	Path     string // path (prefix)
	Port     string // port
	Protocol string // protocol
	Since    string // since: RFC 3339 time or a duration before now (1h)
	Until    string // until
	Text     string // text
}

// Parse builds the EventFilter; errors name the parameter.
func Parse(p Params, now time.Time) (*watchpostv1.EventFilter, error) {
	f := &watchpostv1.EventFilter{AgentId: p.Agent, Host: p.Host, Exe: p.Exe, PathPrefix: p.Path, Protocol: p.Protocol, Text: p.Text}
	var err error
	if f.Types, err = ParseTypes(p.Types); err != nil {
		return nil, fmt.Errorf("type: %w", err)
	}
	if p.PID != "" {
		n, err := strconv.ParseUint(p.PID, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("pid: %q is not a process id", p.PID)
		}
		f.Pid = uint32(n)
	}
	if p.Port != "" {
		n, err := strconv.ParseUint(p.Port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("port: %q is not a port number", p.Port)
		}
		f.Port = uint32(n)
	}
	if f.SinceUnixNano, err = ParseTime(p.Since, now); err != nil {
		return nil, fmt.Errorf("since: %w", err)
	}
	if f.UntilUnixNano, err = ParseTime(p.Until, now); err != nil {
		return nil, fmt.Errorf("until: %w", err)
	}
	return f, nil
}

// ParseTypes parses comma-separated event type names; "file_*" selects
// every type with that prefix.
func ParseTypes(s string) ([]watchpostv1.EventType, error) {
	if s == "" {
		return nil, nil
	}
	var out []watchpostv1.EventType
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if prefix, ok := strings.CutSuffix(name, "*"); ok {
			n := len(out)
			for _, t := range eventtype.All() {
				if strings.HasPrefix(eventtype.Name(t), prefix) {
					out = append(out, t)
				}
			}
			if len(out) == n {
				return nil, fmt.Errorf("no event type matches %q", name)
			}
			continue
		}
		t, err := eventtype.Parse(name)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// ParseTime accepts an RFC 3339 time or a duration meaning that long before
// now; "" is 0 (unbounded).
func ParseTime(s string, now time.Time) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		d, derr := time.ParseDuration(s)
		if derr != nil {
			return 0, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
		}
		t = now.Add(-d)
	}
	// Event times are nanoseconds since 1970 in an int64: a time outside
	// that range would wrap around and match nothing (or everything).
	if t.Before(minTime) || t.After(maxTime) {
		return 0, fmt.Errorf("%q is outside %s .. %s, the times events can carry", s,
			minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

// minTime and maxTime bound the times a filter takes (int64 nanoseconds
// since the Unix epoch; 0 means unbounded, so the epoch itself is out).
var (
	minTime = time.Unix(0, 1).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC().Truncate(time.Second)
)

// TypeName is the stable name of an event type (exec, file_open ...).
func TypeName(t watchpostv1.EventType) string { return eventtype.Name(t) }
