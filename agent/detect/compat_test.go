package detect

import (
	"context"
	"encoding/base64"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bradleyjkemp/sigma-go"
	"github.com/bradleyjkemp/sigma-go/evaluator"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/watchpost/watchpost/agent/event"
)

// TestSigmaCompatibility evaluates the rules of testdata/compat, written
// for this test to cover every supported modifier and condition form, over
// a generated corpus of events with this engine and with an independent
// Sigma evaluator (github.com/bradleyjkemp/sigma-go v0.6.6), and requires
// identical verdicts for every rule on every event.
//
// sigma-go has no value wildcards, keywords, windash, base64offset, |cased
// or re sub-modifiers: the oracle gets each such rule rewritten into the
// form the Sigma specification defines it as (an anchored regular
// expression, CommandLine|contains, the expanded value lists, its
// case-sensitive mode, an inline (?i) flag).
func TestSigmaCompatibility(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(passwd, []byte("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{RulesDir: "testdata/compat", PasswdFile: passwd, Host: "gw"}, Deps{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.Status(); len(st.Errors) > 0 {
		t.Fatalf("rules did not load: %v", st.Errors)
	}
	oracles := loadOracles(t, []string{"testdata/compat/rules.yml", "testdata/compat/cased.yml"})
	if len(oracles) != e.Status().Rules {
		t.Fatalf("%d oracle rules, %d loaded", len(oracles), e.Status().Rules)
	}
	rng := rand.New(rand.NewPCG(13, 2026))
	const n = 30000
	fired := map[string]int{}
	for i := 0; i < n; i++ {
		ev := genEvent(rng, uint64(i+1))
		got := map[string]bool{}
		for _, a := range e.Detect(ev) {
			got[a.Alert.RuleID] = true
		}
		m := oracleEvent(ev)
		for _, o := range oracles {
			want := false
			if o.category == categoryName(ev) || (o.category == "file_access" && ev.Kind == event.KindFileOpen) {
				res, err := o.eval.Matches(context.Background(), m)
				if err != nil {
					t.Fatalf("oracle %s: %v", o.id, err)
				}
				want = res.Match
			}
			if got[o.id] != want {
				t.Fatalf("event %d, rule %s: engine %v, sigma-go %v\nevent: %+v\nfields: %v", i, o.id, got[o.id], want, ev, m)
			}
			if want {
				fired[o.id]++
			}
		}
	}
	// Every rule must have fired on some events and not on others, or
	// the corpus says nothing about it.
	for _, o := range oracles {
		if fired[o.id] == 0 || fired[o.id] == n {
			t.Errorf("rule %s fired on %d of %d events: the corpus does not exercise it", o.id, fired[o.id], n)
		}
	}
	t.Logf("%d events, %d rules, identical verdicts; matches per rule: %v", n, len(oracles), fired)
}

type oracle struct {
	id, category string
	eval         *evaluator.RuleEvaluator
}

func categoryName(ev *event.Event) string {
	switch ev.Kind {
	case event.KindExec:
		return "process_creation"
	case event.KindFileOpen:
		if ev.File.Write {
			return "file_event"
		}
		return "file_access"
	case event.KindFileRename, event.KindFileLink, event.KindFileSymlink, event.KindFileTruncate:
		return "file_event"
	case event.KindFileUnlink, event.KindFileRmdir:
		return "file_delete"
	case event.KindNetConnect, event.KindNetAccept, event.KindNetUDPFlow:
		return "network_connection"
	}
	return ev.Kind.String()
}

// loadOracles rewrites each rule for sigma-go and compiles it there.
func loadOracles(t *testing.T, files []string) []oracle {
	t.Helper()
	var out []oracle
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cased := strings.HasSuffix(f, "cased.yml")
		for _, doc := range strings.Split(string(b), "\n---\n") {
			var root yaml.Node
			if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
				t.Fatal(err)
			}
			m := root.Content[0]
			rewriteDetection(t, mapGet(m, "detection"))
			rb, err := yaml.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			rule, err := sigma.ParseRule(rb)
			if err != nil {
				t.Fatalf("sigma-go refuses %s: %v\n%s", mapGet(m, "id").Value, err, rb)
			}
			opts := []evaluator.Option{evaluator.WithConfig(sigma.Config{FieldMappings: map[string]sigma.FieldMapping{
				"AncestorImage": {TargetNames: []string{"AncestorImage"}},
			}})}
			if cased {
				opts = append(opts, evaluator.CaseSensitive)
			}
			out = append(out, oracle{id: rule.ID, category: rule.Logsource.Category, eval: evaluator.ForRule(rule, opts...)})
		}
	}
	return out
}

// rewriteDetection turns the constructs sigma-go lacks into their
// specified equivalents.
func rewriteDetection(t *testing.T, det *yaml.Node) {
	for i := 0; i+1 < len(det.Content); i += 2 {
		k, v := det.Content[i], det.Content[i+1]
		if k.Value == "condition" {
			continue
		}
		if v.Kind == yaml.SequenceNode && v.Content[0].Kind == yaml.ScalarNode {
			// Keywords: each is CommandLine|contains, as a list of maps (OR).
			var maps []*yaml.Node
			for _, kw := range v.Content {
				key, vals := rewriteField("CommandLine|contains", []string{kw.Value})
				if vals == nil {
					vals = []string{kw.Value}
				}
				maps = append(maps, fieldMap(key, vals))
			}
			det.Content[i+1] = &yaml.Node{Kind: yaml.SequenceNode, Content: maps}
			continue
		}
		maps := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			maps = v.Content
		}
		for _, m := range maps {
			for j := 0; j+1 < len(m.Content); j += 2 {
				var vals []string
				if m.Content[j+1].Kind == yaml.SequenceNode {
					for _, c := range m.Content[j+1].Content {
						vals = append(vals, c.Value)
					}
				} else {
					vals = []string{m.Content[j+1].Value}
				}
				key, nv := rewriteField(m.Content[j].Value, vals)
				m.Content[j].Value = key
				if nv != nil {
					m.Content[j+1] = yamlSeq(nv)
				}
			}
		}
	}
}

func yamlSeq(vals []string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode}
	for _, v := range vals {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: v, Tag: "!!str"})
	}
	return n
}

func fieldMap(key string, vals []string) *yaml.Node {
	return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: key}, yamlSeq(vals)}}
}

// rewriteField returns the oracle's key and values (nil: unchanged).
func rewriteField(key string, vals []string) (string, []string) {
	parts := strings.Split(key, "|")
	field, mods := parts[0], parts[1:]
	has := func(m string) bool { return slices.Contains(mods, m) }
	drop := func(m string) { mods = slices.DeleteFunc(mods, func(x string) bool { return x == m }) }
	var out []string
	changed := false
	if has("windash") {
		drop("windash")
		for _, v := range vals {
			out = append(out, windashVariants(v)...)
		}
		vals, changed = out, true
	}
	if has("base64offset") {
		drop("base64offset")
		out = nil
		for _, v := range vals {
			for i := 0; i < 3; i++ {
				enc := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(" ", i) + v))
				start := []int{0, 2, 3}[i]
				end := len(enc) - []int{0, 3, 2}[(len(v)+i)%3]
				out = append(out, enc[start:end])
			}
		}
		vals, changed = out, true
	}
	if has("cased") {
		drop("cased") // the evaluator's case-sensitive mode
	}
	if has("re") && (has("i") || has("m") || has("s")) {
		flags := ""
		for _, f := range []string{"i", "m", "s"} {
			if has(f) {
				flags += f
				drop(f)
			}
		}
		out = nil
		for _, v := range vals {
			out = append(out, "(?"+flags+")"+v)
		}
		vals, changed = out, true
	}
	// Values with wildcards become anchored regular expressions.
	if !has("re") && !has("cidr") && slices.ContainsFunc(vals, hasWildcard) {
		op := ""
		for _, m := range []string{"contains", "startswith", "endswith"} {
			if has(m) {
				op = m
				drop(m)
			}
		}
		out = nil
		for _, v := range vals {
			re := globRegexp(v)
			switch op {
			case "contains":
				re = ".*" + re + ".*"
			case "startswith":
				re += ".*"
			case "endswith":
				re = ".*" + re
			}
			out = append(out, "(?is)^"+re+"$")
		}
		mods = append(mods, "re")
		vals, changed = out, true
	}
	if has("all") { // sigma-go wants all last
		drop("all")
		mods = append(mods, "all")
	}
	key = strings.Join(append([]string{field}, mods...), "|")
	if !changed {
		return key, nil
	}
	return key, vals
}

func hasWildcard(v string) bool {
	_, g := parseWildcards(v, false)
	return g != nil
}

func globRegexp(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v) && strings.ContainsRune(`*?\`, rune(v[i+1])):
			b.WriteString(regexp.QuoteMeta(v[i+1 : i+2]))
			i++
		case c == '*':
			b.WriteString(".*")
		case c == '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(v[i : i+1]))
		}
	}
	return b.String()
}

// oracleEvent maps an event onto the Sysmon field names, as docs/detection.md
// documents them (written independently of the engine's accessors).
func oracleEvent(ev *event.Event) map[string]any {
	users := map[uint32]string{0: "root", 1000: "alice", 65534: "nobody"}
	user := func(uid uint32) string {
		if n, ok := users[uid]; ok {
			return n
		}
		return strconv.FormatUint(uint64(uid), 10)
	}
	p := ev.Process
	m := map[string]any{
		"Image": p.Exe, "CommandLine": strings.Join(p.Args, " "), "CurrentDirectory": p.Cwd, "User": user(p.UID),
		"ProcessId": strconv.Itoa(int(p.PID)), "ParentImage": "", "ParentCommandLine": "",
	}
	var anc []string
	for _, a := range ev.Ancestry {
		anc = append(anc, a.Exe)
	}
	m["AncestorImage"] = anc
	if len(ev.Ancestry) > 0 {
		m["ParentImage"] = ev.Ancestry[0].Exe
		m["ParentCommandLine"] = strings.Join(ev.Ancestry[0].Args, " ")
	}
	if f := ev.File; f != nil {
		m["TargetFilename"] = f.Path
		if ev.Kind == event.KindFileRename || ev.Kind == event.KindFileLink {
			m["TargetFilename"] = f.NewPath
		}
	}
	if n := ev.Net; n != nil {
		src, sport, dst, dport := n.SrcAddr, n.SrcPort, n.DstAddr, n.DstPort
		if ev.Kind == event.KindNetAccept || n.Direction == "inbound" {
			src, sport, dst, dport = dst, dport, src, sport
		}
		m["SourceIp"], m["SourcePort"] = src, strconv.Itoa(int(sport))
		m["DestinationIp"], m["DestinationPort"] = dst, strconv.Itoa(int(dport))
	}
	return m
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

var (
	genImages = []string{"/usr/bin/curl", "/usr/bin/wget", "/USR/BIN/CURL", "/usr/bin/Wget", "/bin/bash", "/usr/bin/bash", "/bin/sh",
		"/usr/bin/python3", "/usr/local/bin/python3.11", "/usr/lib/py", "/usr/bin/perl", "/usr/bin/nc", "/opt/nc", "/usr/bin/tee",
		"/usr/bin/vi", "", "/usr/bin/pÿthon", "/tmp/ÉVIL", "/usr/sbin/sshd", "/usr/bin/ncat"}
	genTokens = []string{"curl", "http://10.0.0.1/x", "-o", "/tmp/a", "-O-", "wget", "base64", "-d", "|", "sh", "rm", "-rf", "/",
		"chmod", "+s", "nc", "-e", "-le", "/bin/sh", "python3", "-c", "import socket", "import Socket", "import pocket",
		"/dev/tcp/1.2.3.4/80", "127.0.0.1", "-exec", "/exec", "\u2013exec", "-delete", "/delete", "-X", "POST", "-x", "post",
		"PYTHON3", "-C", "-X POST", "-x post", "-X post", "-o /tmp/out", "base64 -d |", "Y3VybCBodHRw", "eCAvYmluL3No", "IC9iaW4vc2g", "L2Jpbi9zaA", "healthcheck", "ÉCHO", "ncat", "netcat", "-ve"}
	genUsers = []uint32{0, 0, 1000, 65534, 4321}
	genCwds  = []string{"/tmp", "/var/tmp", "/home/alice", "/home/alice/tmp", "/var/lib/apt", "", "/root", "/TMP"}
	genAnc   = []string{"/bin/bash", "/usr/sbin/sshd", "/usr/sbin/nginx", "/usr/lib/systemd/systemd", "/usr/bin/SSHD", ""}
	genFiles = []string{"/etc/cron.d/job", "/etc/crontab", "/etc/shadow", "/etc/sudoers", "/etc/SUDOERS", "/lib/systemd/system/a.service",
		"/tmp/x.SERVICE", "/home/alice/shadowfile", "", "/etc/cronjob", "/var/tmp/etc/x"}
	genIPs   = []string{"10.1.2.3", "192.168.1.1", "172.16.0.1", "fd00::1", "::ffff:10.0.0.5", "8.8.8.8", "", "2001:db8::1", "127.0.0.1"}
	genPorts = []uint16{502, 102, 20000, 21, 20, 22, 40000, 50000, 1023, 1024, 80, 19}
)

func genArgs(r *rand.Rand) []string {
	var b strings.Builder
	n := 1 + r.IntN(5)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pick(r, genTokens))
	}
	return strings.Fields(b.String())
}

func genEvent(r *rand.Rand, seq uint64) *event.Event {
	ev := &event.Event{Seq: seq, Time: time.Unix(1700000000, int64(seq)), BootNS: seq * 1000,
		Process: event.Process{PID: uint32(1000 + r.IntN(5000)), PPID: 1, UID: pick(r, genUsers), Exe: pick(r, genImages), Cwd: pick(r, genCwds)}}
	if r.IntN(20) == 0 {
		ev.Process.PID = 4242
	}
	ev.Process.Args = append([]string{pick(r, []string{ev.Process.Exe, "python3", "PYTHON3", "nc", "bash"})}, genArgs(r)...)
	if r.IntN(6) == 0 {
		ev.Process.Args = nil
	}
	for i, n := 0, r.IntN(4); i < n; i++ {
		exe := pick(r, genAnc)
		ev.Ancestry = append(ev.Ancestry, event.Ancestor{PID: uint32(10 + i), Exe: exe, Args: append([]string{exe}, genArgs(r)...)})
	}
	switch r.IntN(3) {
	case 0:
		ev.Kind = event.KindExec
		ev.Exec = &event.Exec{}
	case 1:
		ev.Kind = pick(r, []event.Kind{event.KindFileOpen, event.KindFileOpen, event.KindFileRename, event.KindFileLink,
			event.KindFileSymlink, event.KindFileTruncate, event.KindFileUnlink})
		ev.File = &event.File{Path: pick(r, genFiles), Write: r.IntN(2) == 0}
		if ev.Kind == event.KindFileRename || ev.Kind == event.KindFileLink || ev.Kind == event.KindFileSymlink {
			ev.File.NewPath = pick(r, genFiles)
		}
	default:
		ev.Kind = pick(r, []event.Kind{event.KindNetConnect, event.KindNetAccept, event.KindNetUDPFlow})
		ev.Net = &event.Net{Family: "inet", Protocol: "tcp", SrcAddr: pick(r, genIPs), SrcPort: pick(r, genPorts),
			DstAddr: pick(r, genIPs), DstPort: pick(r, genPorts)}
		if ev.Kind == event.KindNetUDPFlow && r.IntN(2) == 0 {
			ev.Net.Direction = "inbound"
		}
	}
	return ev
}
