package filter

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// AlertParams are the textual alert filters, named as the HTTP query
// parameters and the CLI flags of `watchpost alerts`.
type AlertParams struct {
	Agent    string // agent
	Host     string // host
	Since    string // since
	Until    string // until
	State    string // state: comma-separated (open,acknowledged,resolved)
	Severity string // severity: the lowest shown (info, low, medium, high, critical)
	Kind     string // kind: comma-separated short names (missed_heartbeat,drop_jump)
	Rule     string // rule: a detection rule id
	// Technique: an ATT&CK technique (T0855); sub-techniques match too.
	Technique string
}

// ParseAlerts builds a ListAlertsRequest (without limit and paging);
// errors name the parameter.
func ParseAlerts(p AlertParams, now time.Time) (*watchpostv1.ListAlertsRequest, error) {
	req := &watchpostv1.ListAlertsRequest{AgentId: p.Agent, Host: p.Host, RuleId: p.Rule, Technique: strings.ToUpper(p.Technique)}
	if req.Technique != "" && !techniqueID.MatchString(req.Technique) {
		return nil, fmt.Errorf("technique: %q is not an ATT&CK technique id (T0855, T1059.004)", p.Technique)
	}
	var err error
	if req.SinceUnixNano, err = ParseTime(p.Since, now); err != nil {
		return nil, fmt.Errorf("since: %w", err)
	}
	if req.UntilUnixNano, err = ParseTime(p.Until, now); err != nil {
		return nil, fmt.Errorf("until: %w", err)
	}
	for _, s := range splitList(p.State) {
		st, err := ParseAlertState(s)
		if err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
		req.States = append(req.States, st)
	}
	if p.Severity != "" {
		v, ok := watchpostv1.Severity_value["SEVERITY_"+strings.ToUpper(p.Severity)]
		if !ok || v == 0 {
			return nil, fmt.Errorf("severity: %q is not info, low, medium, high or critical", p.Severity)
		}
		req.MinSeverity = watchpostv1.Severity(v)
	}
	for _, s := range splitList(p.Kind) {
		v, ok := watchpostv1.AlertKind_value["ALERT_KIND_"+strings.ToUpper(s)]
		if !ok || v == 0 {
			return nil, fmt.Errorf("kind: %q is not an alert kind", s)
		}
		req.Kinds = append(req.Kinds, watchpostv1.AlertKind(v))
	}
	return req, nil
}

// ParseAlertState parses open, acknowledged (or ack) and resolved.
func ParseAlertState(s string) (watchpostv1.AlertState, error) {
	if strings.EqualFold(s, "ack") {
		s = "acknowledged"
	}
	v, ok := watchpostv1.AlertState_value["ALERT_STATE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, fmt.Errorf("%q is not open, acknowledged or resolved", s)
	}
	return watchpostv1.AlertState(v), nil
}

// AlertStateName is a state's short name (open, acknowledged, resolved).
func AlertStateName(s watchpostv1.AlertState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ALERT_STATE_"))
}

var techniqueID = regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// AlertsQuery reads the alert filters, limit and before_id of
// an HTTP query (the API's and the dashboard's).
func AlertsQuery(v url.Values, now time.Time) (*watchpostv1.ListAlertsRequest, error) {
	req, err := ParseAlerts(AlertParams{Agent: v.Get("agent"), Host: v.Get("host"), Since: v.Get("since"),
		Until: v.Get("until"), State: v.Get("state"), Severity: v.Get("severity"), Kind: v.Get("kind"),
		Rule: v.Get("rule"), Technique: v.Get("technique")}, now)
	if err != nil {
		return nil, err
	}
	for _, p := range []struct {
		name string
		bits int
		set  func(uint64)
	}{{"limit", 32, func(n uint64) { req.Limit = uint32(n) }}, {"before_id", 64, func(n uint64) { req.BeforeId = n }}} {
		if s := v.Get(p.name); s != "" {
			n, err := strconv.ParseUint(s, 10, p.bits)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a number", p.name, s)
			}
			p.set(n)
		}
	}
	return req, nil
}
