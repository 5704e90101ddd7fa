package detect

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchpost/watchpost/agent/event"
)

// benchRules writes n rules in the Sigma format shaped like SigmaHQ's
// Linux rules (process_creation with Image|endswith lists and
// CommandLine|contains|all, some regular expressions; file_event on path
// prefixes and suffixes; network_connection on ports and CIDRs).
func benchRules(dir string, n int) error {
	r := rand.New(rand.NewPCG(150, 7))
	tools := []string{"curl", "wget", "nc", "ncat", "socat", "python3", "perl", "ruby", "php", "bash", "sh", "dash", "base64",
		"openssl", "chmod", "chown", "crontab", "systemctl", "useradd", "usermod", "passwd", "iptables", "nft", "tcpdump",
		"nmap", "masscan", "xmrig", "dd", "shred", "rm", "find", "grep", "awk", "sed", "tar", "zip", "scp", "ssh", "sshpass",
		"gdb", "strace", "insmod", "modprobe", "mount", "setcap", "busybox", "telnet", "ftp", "tftp", "git", "docker"}
	words := []string{"-e /bin/sh", "--exec", "/dev/tcp/", "-c 'import pty", "base64 -d", "| sh", "| bash", "-O-", "--post-file",
		"/etc/shadow", "/etc/passwd", "authorized_keys", "LD_PRELOAD", "-p 4444", "0.0.0.0", "--no-check-certificate",
		"chmod +x", "nohup", "/tmp/.", "/dev/shm/", "history -c", "unset HISTFILE", "iptables -F", "stratum+tcp", "--donate-level",
		"-w 1", "cap_setuid", "+s", "-delete", "-exec", "--privileged", "-v /:/host", "xmr", "pool.", "reverse", "bind",
		"/proc/self/", "memfd", "kcore", "/var/log/", "wtmp", "lastlog", "crontab -r", "echo -e", "\\x", "eval", "exec("}
	paths := []string{"/etc/cron.d/", "/etc/systemd/system/", "/etc/init.d/", "/etc/profile.d/", "/etc/ld.so.preload", "/root/.ssh/",
		"/etc/sudoers.d/", "/usr/lib/systemd/", "/etc/rc.local", "/var/spool/cron/", "/etc/update-motd.d/", "/boot/", "/lib/modules/"}
	for i := 0; i < n; i++ {
		var b strings.Builder
		fmt.Fprintf(&b, "title: generated rule %d\nid: bench-%03d\nlogsource:\n  product: linux\n", i, i)
		switch {
		case i < n*2/3:
			b.WriteString("  category: process_creation\ndetection:\n  selection_img:\n    Image|endswith:\n")
			for j := 0; j < 1+r.IntN(4); j++ {
				fmt.Fprintf(&b, "      - '/%s'\n", tools[r.IntN(len(tools))])
			}
			b.WriteString("  selection_cli:\n    CommandLine|contains|all:\n")
			for j := 0; j < 1+r.IntN(3); j++ {
				fmt.Fprintf(&b, "      - '%s'\n", strings.ReplaceAll(words[r.IntN(len(words))], "'", "''"))
			}
			switch r.IntN(6) {
			case 0:
				fmt.Fprintf(&b, "  selection_re:\n    CommandLine|re: '%s\\s+-[a-z]+\\s+\\d+'\n  condition: all of selection_*\n", tools[r.IntN(len(tools))])
			case 1:
				fmt.Fprintf(&b, "  filter:\n    ParentImage|endswith: '/%s'\n  condition: all of selection_* and not filter\n", tools[r.IntN(len(tools))])
			default:
				b.WriteString("  condition: all of selection_*\n")
			}
		case i < n*13/15:
			fmt.Fprintf(&b, "  category: file_event\ndetection:\n  selection:\n    TargetFilename|startswith: '%s'\n", paths[r.IntN(len(paths))])
			fmt.Fprintf(&b, "  filter:\n    Image|endswith: ['/dpkg', '/%s']\n  condition: selection and not filter\n", tools[r.IntN(len(tools))])
		default:
			fmt.Fprintf(&b, "  category: network_connection\ndetection:\n  selection:\n    DestinationPort: [%d, %d]\n    Image|endswith: '/%s'\n",
				1000+r.IntN(60000), 1000+r.IntN(60000), tools[r.IntN(len(tools))])
			if r.IntN(2) == 0 {
				b.WriteString("  filter:\n    DestinationIp|cidr: ['10.0.0.0/8', '192.168.0.0/16']\n  condition: selection and not filter\n")
			} else {
				b.WriteString("  condition: selection\n")
			}
		}
		b.WriteString("level: medium\n")
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("bench-%03d.yml", i)), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchEvents is a gateway's stream: mostly file opens and network events,
// execs of the usual tools, every one of them through enrichment (ancestry
// of three).
func benchEvents(n int, matching bool) []*event.Event {
	r := rand.New(rand.NewPCG(42, 1))
	exes := []string{"/usr/bin/python3.11", "/usr/sbin/modbusd", "/opt/scada/bin/poller", "/usr/bin/bash", "/usr/bin/ls",
		"/usr/bin/cat", "/usr/lib/systemd/systemd-journald", "/usr/sbin/sshd", "/usr/bin/node", "/usr/sbin/cron"}
	files := []string{"/var/lib/plc/tags.db", "/etc/ld.so.cache", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/proc/self/stat",
		"/var/log/syslog", "/opt/scada/config/points.csv", "/dev/ttyUSB0", "/etc/hosts", "/tmp/session.lock", "/srv/historian/2026-12.dat"}
	args := [][]string{{"ls", "-la", "/var/lib/plc"}, {"python3", "/opt/scada/poll.py", "--unit", "1"}, {"cat", "/proc/loadavg"},
		{"bash", "-c", "date >> /var/log/poll.log"}, {"systemctl", "status", "modbusd"}, {"grep", "ERROR", "/var/log/syslog"}}
	anc := []event.Ancestor{{PID: 800, Exe: "/usr/bin/bash", Args: []string{"-bash"}}, {PID: 700, Exe: "/usr/sbin/sshd", Args: []string{"sshd: op@pts/0"}},
		{PID: 1, Exe: "/usr/lib/systemd/systemd", Args: []string{"/sbin/init"}}}
	out := make([]*event.Event, n)
	for i := range out {
		ev := &event.Event{Seq: uint64(i + 1), BootNS: uint64(i) * 1000, Time: time.Unix(1800000000, int64(i)*1000),
			Process:  event.Process{PID: uint32(1000 + r.IntN(200)), PPID: 800, UID: 1000, Exe: exes[r.IntN(len(exes))], Cwd: "/home/op"},
			Ancestry: anc}
		ev.Process.Args = args[r.IntN(len(args))]
		switch x := r.IntN(20); {
		case x < 2:
			ev.Kind, ev.Exec = event.KindExec, &event.Exec{}
			ev.Process.Exe = "/usr/bin/" + ev.Process.Args[0]
		case x < 12:
			ev.Kind = event.KindFileOpen
			ev.File = &event.File{Syscall: "openat", Path: files[r.IntN(len(files))], Flags: 0, Result: 3}
			if r.IntN(4) == 0 {
				ev.File.Flags, ev.File.Write = 0o2101, true // O_WRONLY|O_CREAT|O_APPEND
			}
		case x < 17:
			ev.Process.Exe = "/opt/scada/bin/poller"
			ev.Kind = []event.Kind{event.KindNetConnect, event.KindNetClose, event.KindNetUDPFlow}[r.IntN(3)]
			ev.Net = &event.Net{Family: "inet", Protocol: "tcp", SrcAddr: "10.1.0.5", SrcPort: uint16(40000 + r.IntN(2000)),
				DstAddr: fmt.Sprintf("10.1.0.%d", 10+r.IntN(20)), DstPort: []uint16{502, 443, 1883, 20000}[r.IntN(4)]}
		case x < 19:
			ev.Kind, ev.Exit = event.KindExit, &event.Exit{}
		default:
			ev.Kind, ev.Clone = event.KindClone, &event.Clone{ChildPID: uint32(2000 + i)}
		}
		if matching && i%64 == 0 { // a payload run from shared memory
			ev.Kind, ev.Exec, ev.File, ev.Net, ev.Exit, ev.Clone = event.KindExec, &event.Exec{}, nil, nil, nil, nil
			ev.Process.Exe, ev.Process.Args = "/dev/shm/.x", []string{"/dev/shm/.x"}
		}
		out[i] = ev
	}
	return out
}

func benchEngine(b *testing.B, extra int) *Engine {
	b.Helper()
	dir := b.TempDir()
	if err := benchRules(dir, extra); err != nil {
		b.Fatal(err)
	}
	e, err := New(Config{Packs: Packs(), RulesDir: dir, Host: "gw"}, Deps{Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	if st := e.Status(); len(st.Errors) > 0 || st.Rules < extra+len(Packs()) {
		b.Fatalf("rules: %d loaded, errors %v", st.Rules, st.Errors)
	}
	return e
}

// BenchmarkMatcher is the rule engine on one goroutine with the packs and
// 150 Sigma-format rules: nomatch is a stream no rule fires on (the
// common path, which must not allocate), mixed has one event in 64
// raising an alert. events/s is per core.
func BenchmarkMatcher(b *testing.B) {
	for _, c := range []struct {
		name     string
		matching bool
	}{{"nomatch", false}, {"mixed", true}} {
		b.Run(c.name, func(b *testing.B) {
			e := benchEngine(b, 150)
			evs := benchEvents(8192, c.matching)
			for _, ev := range evs[:1024] { // warm the buffers
				e.Detect(ev)
			}
			alerts := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				alerts += len(e.Detect(evs[i&8191]))
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(alerts)/float64(b.N), "alerts/event")
		})
	}
}

// BenchmarkMatcherRules shows the cost does not grow with the number of
// rules: the packs alone, then with 150 and 600 generated rules.
func BenchmarkMatcherRules(b *testing.B) {
	for _, n := range []int{0, 150, 600} {
		b.Run(fmt.Sprintf("extra=%d", n), func(b *testing.B) {
			e := benchEngine(b, n)
			evs := benchEvents(8192, false)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.Detect(evs[i&8191])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
