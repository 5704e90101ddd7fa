package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// AlertFilter selects alerts. Zero fields match everything.
type AlertFilter struct {
	AgentID string
	Host    string
	Since   time.Time
	Until   time.Time
	// States: any of these; none means every state.
	States []watchpostv1.AlertState
	// MinSeverity: at least this severity.
	MinSeverity watchpostv1.Severity
	// Kinds: any of these; none means every kind.
	Kinds []watchpostv1.AlertKind
	// BeforeID: only alerts with a smaller id (paging towards older ones).
	BeforeID uint64
	// RuleID: detection alerts of this rule.
	RuleID string
	// Technique: detection alerts tagged with this ATT&CK technique or one
	// of its sub-techniques (T1059 matches T1059.004).
	Technique string
}

// Match tells whether an alert passes the filter: the reference meaning
// of every field, for engines that filter in memory and for tests.
func (f AlertFilter) Match(a *watchpostv1.Alert) bool {
	return (f.AgentID == "" || a.GetAgentId() == f.AgentID) &&
		(f.Host == "" || a.GetHost() == f.Host) &&
		(f.Since.IsZero() || a.GetTimeUnixNano() >= f.Since.UnixNano()) &&
		(f.Until.IsZero() || a.GetTimeUnixNano() <= f.Until.UnixNano()) &&
		(len(f.States) == 0 || slices.Contains(f.States, a.GetState())) &&
		a.GetSeverity() >= f.MinSeverity &&
		(len(f.Kinds) == 0 || slices.Contains(f.Kinds, a.GetKind())) &&
		(f.BeforeID == 0 || a.GetId() < f.BeforeID) &&
		(f.RuleID == "" || a.GetDetection().GetRuleId() == f.RuleID) &&
		(f.Technique == "" || HasTechnique(a.GetDetection().GetTechniques(), f.Technique))
}

// HasTechnique: t is one of ts, or the parent technique of one.
func HasTechnique(ts []string, t string) bool {
	t = strings.ToUpper(t)
	for _, x := range ts {
		x = strings.ToUpper(x)
		if x == t || strings.HasPrefix(x, t+".") {
			return true
		}
	}
	return false
}

// MaxAlertNote bounds the note of a triage step.
const MaxAlertNote = 1024

// MaxAlertUpdate bounds the alerts of one update.
const MaxAlertUpdate = 1000

// ErrUnknownAlert: an update named an alert id that is not stored.
var ErrUnknownAlert = errors.New("no such alert")

// AlertUpdate is one triage step over a set of alerts.
type AlertUpdate struct {
	IDs []uint64
	// State is ACKNOWLEDGED, RESOLVED, or OPEN (reopen).
	State watchpostv1.AlertState
	// By is who did it (the token's name, or "local" without tokens).
	By string
	// Note replaces the alert's note when not empty.
	Note string
	At   time.Time
}

// Validate checks an update before any engine applies it.
func (u AlertUpdate) Validate() error {
	switch {
	case len(u.IDs) == 0:
		return errors.New("ids: at least one alert id is required")
	case len(u.IDs) > MaxAlertUpdate:
		return fmt.Errorf("ids: %d alerts, at most %d per update", len(u.IDs), MaxAlertUpdate)
	case slices.Contains(u.IDs, 0):
		return errors.New("ids: 0 is not an alert id")
	case u.State != watchpostv1.AlertState_ALERT_STATE_OPEN && u.State != watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED &&
		u.State != watchpostv1.AlertState_ALERT_STATE_RESOLVED:
		return fmt.Errorf("state: %s is not open, acknowledged or resolved", u.State)
	case len(u.Note) > MaxAlertNote:
		return fmt.Errorf("note: %d bytes, at most %d", len(u.Note), MaxAlertNote)
	case !utf8.ValidString(u.Note):
		return errors.New("note: not valid UTF-8")
	case u.By == "":
		return errors.New("by: who made the change is required")
	case u.At.IsZero():
		return errors.New("at: the time of the change is required")
	}
	return nil
}

// Apply sets an alert's state as the update says. Acknowledging keeps the
// first acknowledgement (who saw it first); resolving records the
// resolution, acknowledging too when nobody had; acknowledging a resolved
// alert or reopening one clears the resolution and keeps the
// acknowledgement. Every engine stores the alert
// exactly as Apply leaves it.
func (u AlertUpdate) Apply(a *watchpostv1.Alert) {
	ns := u.At.UnixNano()
	switch u.State {
	case watchpostv1.AlertState_ALERT_STATE_ACKNOWLEDGED, watchpostv1.AlertState_ALERT_STATE_RESOLVED:
		if a.AcknowledgedUnixNano == 0 {
			a.AcknowledgedBy, a.AcknowledgedUnixNano = u.By, ns
		}
		if u.State == watchpostv1.AlertState_ALERT_STATE_RESOLVED {
			a.ResolvedBy, a.ResolvedUnixNano = u.By, ns
		} else {
			a.ResolvedBy, a.ResolvedUnixNano = "", 0
		}
	case watchpostv1.AlertState_ALERT_STATE_OPEN:
		a.ResolvedBy, a.ResolvedUnixNano = "", 0
	}
	a.State = u.State
	if u.Note != "" {
		a.Note = u.Note
	}
}

// AlertTechniques is the value engines keep in an alert's techniques
// column: " T0855 T1059.004 " (upper case, spaces around each), so that a
// technique is found with the LIKE patterns of TechniquePatterns.
func AlertTechniques(a *watchpostv1.Alert) string {
	ts := a.GetDetection().GetTechniques()
	if len(ts) == 0 {
		return ""
	}
	return " " + strings.ToUpper(strings.Join(ts, " ")) + " "
}

// TechniquePatterns are the two LIKE patterns (backslash escapes) that
// find a technique and its sub-techniques in AlertTechniques.
func TechniquePatterns(t string) [2]string {
	e := strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(strings.ToUpper(t))
	return [2]string{"% " + e + " %", "% " + e + ".%"}
}
