package container

import (
	"bytes"
	"strings"
)

// Runtime names reported in events (process.container_runtime).
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimePodman     = "podman"
	RuntimeKubernetes = "kubernetes" // cgroupfs layout of the kubelet: the runtime is not in the path
	RuntimeNspawn     = "systemd-nspawn"
)

// Location is what a cgroup path tells about a container.
type Location struct {
	ID      string
	Runtime string
	// Namespace is the containerd namespace when the path shows it
	// (cgroupfs layout /NAMESPACE/ID).
	Namespace string
}

// cgroupPaths returns the unified (v2) path and the v1 paths of a
// /proc/PID/cgroup file.
func cgroupPaths(b []byte) (unified string, v1 []string) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		// hierarchy-ID:controller-list:path
		first := bytes.IndexByte(line, ':')
		if first < 0 {
			continue
		}
		second := bytes.IndexByte(line[first+1:], ':')
		if second < 0 {
			continue
		}
		path := string(line[first+1+second+1:])
		if string(line[:first]) == "0" && second == 0 {
			unified = path
		} else {
			v1 = append(v1, path)
		}
	}
	return unified, v1
}

// Locate finds the container in a cgroup path, innermost first, for the
// naming of Docker, containerd, CRI-O, Podman, the kubelet and
// systemd-nspawn, with the systemd and the cgroupfs drivers:
//
//	system.slice/docker-ID.scope                      docker, systemd driver
//	/docker/ID                                        docker, cgroupfs driver
//	kubepods.slice/.../cri-containerd-ID.scope        containerd under the kubelet
//	kubepods.slice/.../crio-ID.scope                  CRI-O
//	/kubepods/besteffort/podUID/ID                    kubelet, cgroupfs driver
//	/NAMESPACE/ID                                     containerd (ctr, nerdctl), cgroupfs
//	machine.slice/libpod-ID.scope                     podman
//	machine.slice/machine-NAME.scope                  systemd-nspawn
//
// IDs other than nspawn machine names are 64 hex digits. Conmon's own
// scopes (crio-conmon-, libpod-conmon-) are not containers.
func Locate(path string) (Location, bool) {
	var parts []string
	for _, p := range strings.Split(path, "/") {
		// A path seen from another cgroup namespace starts with "/..".
		if p != "" && p != "." && p != ".." {
			parts = append(parts, p)
		}
	}
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		parent := ""
		if i > 0 {
			parent = parts[i-1]
		}
		if name, ok := strings.CutSuffix(p, ".scope"); ok {
			for _, s := range []struct{ prefix, runtime string }{
				{"docker-", RuntimeDocker}, {"cri-containerd-", RuntimeContainerd},
				{"crio-", RuntimeCRIO}, {"libpod-", RuntimePodman},
			} {
				if id, ok := strings.CutPrefix(name, s.prefix); ok && isContainerID(id) {
					return Location{ID: id, Runtime: s.runtime}, true
				}
			}
			if m, ok := strings.CutPrefix(name, "machine-"); ok && parent == "machine.slice" {
				m = unescapeUnit(m)
				// libvirt names its virtual machines' scopes the same way.
				if m != "" && !strings.HasPrefix(m, "qemu-") {
					return Location{ID: m, Runtime: RuntimeNspawn}, true
				}
			}
			continue
		}
		if !isContainerID(p) {
			continue
		}
		switch {
		case parent == "docker":
			return Location{ID: p, Runtime: RuntimeDocker}, true
		case strings.HasPrefix(parent, "pod") && hasPart(parts[:i], "kubepods"):
			return Location{ID: p, Runtime: RuntimeKubernetes}, true
		case parent == "libpod_parent" || strings.HasPrefix(parent, "libpod_pod_"):
			return Location{ID: p, Runtime: RuntimePodman}, true
		case parent == "moby":
			return Location{ID: p, Runtime: RuntimeDocker, Namespace: "moby"}, true
		case parent != "" && i == 1:
			return Location{ID: p, Runtime: RuntimeContainerd, Namespace: parent}, true
		default:
			return Location{ID: p, Runtime: RuntimeContainerd}, true
		}
	}
	return Location{}, false
}

func hasPart(parts []string, s string) bool {
	for _, p := range parts {
		if p == s {
			return true
		}
	}
	return false
}

func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// unescapeUnit undoes systemd's unit name escaping (\x2d for '-').
func unescapeUnit(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, ok := hexByte(s[i+2], s[i+3]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hexByte(a, b byte) (byte, bool) {
	h, ok1 := hexDigit(a)
	l, ok2 := hexDigit(b)
	return h<<4 | l, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
