// Package helm_test renders the Watchpost chart with Helm's Go SDK for each
// values file in the chart's ci/ directory, decodes every document strictly
// into typed Kubernetes objects and checks what a reviewer of a sensor's
// privileges looks at: capabilities, host mounts, probes and resources.
// It also keeps deploy/kubernetes/ equal to what the chart renders.
package helm_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	agentconfig "github.com/watchpost/watchpost/agent/config"
	"github.com/watchpost/watchpost/collector"
)

const (
	chartDir    = "watchpost"
	releaseName = "watchpost"
	namespace   = "watchpost"
	kubeVersion = "v1.33.0"
	plainFile   = "../kubernetes/watchpost.yaml"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes/ from the chart")

// objects is one rendering, decoded.
type objects struct {
	daemonSets   []appsv1.DaemonSet
	statefulSets []appsv1.StatefulSet
	services     []corev1.Service
	configMaps   []corev1.ConfigMap
	secrets      []corev1.Secret
	accounts     []corev1.ServiceAccount
	issuers      []issuer
	certificates []certificate
	docs         int
}

// cert-manager's types are not part of k8s.io/api; these mirror the
// cert-manager.io/v1 fields the chart uses, so strict decoding still
// refuses any field the chart misspells.
type issuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		CA struct {
			SecretName string `json:"secretName"`
		} `json:"ca"`
	} `json:"spec"`
}

type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string   `json:"secretName"`
		CommonName  string   `json:"commonName"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		Usages    []string `json:"usages"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// render renders the chart with one values file and returns the manifests
// in a stable order (by template file name), as one multi-document YAML.
func render(t *testing.T, valuesFile string) string {
	t.Helper()
	out, err := renderFile(valuesFile)
	if err != nil {
		t.Fatalf("%s: %v", valuesFile, err)
	}
	return out
}

func renderFile(valuesFile string) (string, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return "", fmt.Errorf("loading the chart: %w", err)
	}
	vals, err := chartutil.ReadValuesFile(valuesFile)
	if err != nil {
		return "", err
	}
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		return "", err
	}
	caps.KubeVersion = *kv
	rv, err := chartutil.ToRenderValues(chrt, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return "", fmt.Errorf("values: %w", err)
	}
	out, err := engine.Engine{Strict: true}.Render(chrt, rv)
	if err != nil {
		return "", fmt.Errorf("rendering: %w", err)
	}
	names := make([]string, 0, len(out))
	for name := range out {
		if strings.HasSuffix(name, ".yaml") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		body := strings.TrimSpace(out[name])
		if body == "" {
			continue
		}
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, body)
	}
	return b.String(), nil
}

// decode strictly decodes every document into its typed object: an
// unknown field, a wrong type or an unknown kind fails the test.
func decode(t *testing.T, manifests string) objects {
	t.Helper()
	var o objects
	for i, doc := range strings.Split(manifests, "\n---\n") {
		doc = strings.TrimPrefix(doc, "---\n")
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("document %d: %v\n%s", i, err, doc)
		}
		if meta.Kind == "" {
			continue // comments only
		}
		o.docs++
		var target any
		switch meta.APIVersion + "/" + meta.Kind {
		case "apps/v1/DaemonSet":
			target = grow(&o.daemonSets)
		case "apps/v1/StatefulSet":
			target = grow(&o.statefulSets)
		case "v1/Service":
			target = grow(&o.services)
		case "v1/ConfigMap":
			target = grow(&o.configMaps)
		case "v1/Secret":
			target = grow(&o.secrets)
		case "v1/ServiceAccount":
			target = grow(&o.accounts)
		case "cert-manager.io/v1/Issuer":
			target = grow(&o.issuers)
		case "cert-manager.io/v1/Certificate":
			target = grow(&o.certificates)
		default:
			t.Fatalf("document %d: unexpected %s %s", i, meta.APIVersion, meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), target); err != nil {
			t.Fatalf("document %d (%s): strict decoding: %v\n%s", i, meta.Kind, err, doc)
		}
	}
	return o
}

// grow appends a zero object and returns a pointer to it.
func grow[T any](s *[]T) *T {
	*s = append(*s, *new(T))
	return &(*s)[len(*s)-1]
}

func renderValues(t *testing.T, name string) objects {
	t.Helper()
	return decode(t, render(t, filepath.Join(chartDir, "ci", name)))
}

func TestChartLints(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("values files: %v %v", files, err)
	}
	kv, _ := chartutil.ParseKubeVersion(kubeVersion)
	for _, f := range files {
		vals, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// What `helm lint --strict -f FILE` runs: warnings fail too.
		l := lint.AllWithKubeVersion(chartDir, vals, namespace, kv)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: helm lint: %s", f, m)
			}
		}
	}
}

func agentContainer(t *testing.T, o objects) (appsv1.DaemonSet, corev1.Container) {
	t.Helper()
	if len(o.daemonSets) != 1 {
		t.Fatalf("%d DaemonSets, want 1", len(o.daemonSets))
	}
	ds := o.daemonSets[0]
	if n := len(ds.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("agent pod has %d containers, want 1", n)
	}
	return ds, ds.Spec.Template.Spec.Containers[0]
}

// noPrivilegedContainer fails on any privileged container or pod-level host
// namespace in the rendering.
func noPrivilegedContainer(t *testing.T, o objects) {
	t.Helper()
	var pods []corev1.PodSpec
	for _, ds := range o.daemonSets {
		pods = append(pods, ds.Spec.Template.Spec)
	}
	for _, ss := range o.statefulSets {
		pods = append(pods, ss.Spec.Template.Spec)
	}
	for _, p := range pods {
		if p.HostPID || p.HostNetwork || p.HostIPC {
			t.Errorf("pod shares a host namespace: hostPID %v hostNetwork %v hostIPC %v", p.HostPID, p.HostNetwork, p.HostIPC)
		}
		for _, c := range append(p.InitContainers, p.Containers...) {
			sc := c.SecurityContext
			if sc == nil || sc.Privileged == nil || *sc.Privileged {
				t.Errorf("container %s: privileged is not explicitly false", c.Name)
			}
			if sc != nil && (sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation) {
				t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
			}
			if sc != nil && (sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem) {
				t.Errorf("container %s: root file system is writable", c.Name)
			}
		}
	}
}

type mount struct {
	host, path string
	readOnly   bool
	hostType   corev1.HostPathType
}

// hostMounts lists the agent's host paths with where they are mounted.
func hostMounts(t *testing.T, ds appsv1.DaemonSet, c corev1.Container) []mount {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	var out []mount
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("mount %s has no volume", m.Name)
		}
		if v.HostPath == nil {
			continue
		}
		out = append(out, mount{host: v.HostPath.Path, path: m.MountPath, readOnly: m.ReadOnly, hostType: *v.HostPath.Type})
	}
	return out
}

func healthProbe(t *testing.T, what string, p *corev1.Probe) {
	t.Helper()
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "metrics" {
		t.Errorf("agent %s probe: %+v, want GET /healthz on port metrics", what, p)
	}
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

func TestChartDefault(t *testing.T) {
	o := renderValues(t, "default-values.yaml")
	noPrivilegedContainer(t, o)
	ds, c := agentContainer(t, o)
	sc := c.SecurityContext
	if got, want := sc.Capabilities.Add, []corev1.Capability{"BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE"}; !slices.Equal(got, want) {
		t.Errorf("capabilities added %v, want exactly %v", got, want)
	}
	if got := sc.Capabilities.Drop; !slices.Equal(got, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities dropped %v, want [ALL]", got)
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("agent runAsUser %v, want 0 (capabilities are granted to uid 0 only)", sc.RunAsUser)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined {
		t.Errorf("agent seccomp %+v", sc.SeccompProfile)
	}
	dirOrCreate, dir, sock := corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory, corev1.HostPathSocket
	want := []mount{
		{"/var/lib/watchpost", "/var/lib/watchpost", false, dirOrCreate},
		{"/proc", "/host/proc", true, dir},
		{"/sys/kernel/btf", "/sys/kernel/btf", true, dir},
		{"/sys/kernel/tracing", "/sys/kernel/tracing", true, dir},
		{"/sys/fs/cgroup", "/host/sys/fs/cgroup", true, dir},
		{"/run/containerd/containerd.sock", "/run/watchpost/runtime/containerd.sock", true, sock},
	}
	if diff := cmp.Diff(want, hostMounts(t, ds, c), cmp.AllowUnexported(mount{})); diff != "" {
		t.Errorf("agent host mounts (-want +got):\n%s", diff)
	}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly && m.MountPath != "/var/lib/watchpost" {
			t.Errorf("agent mount %s is writable; only the state directory may be", m.MountPath)
		}
	}
	healthProbe(t, "startup", c.StartupProbe)
	healthProbe(t, "liveness", c.LivenessProbe)
	healthProbe(t, "readiness", c.ReadinessProbe)
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != 9464 {
		t.Errorf("agent ports %+v, want metrics 9464", c.Ports)
	}
	wantRes := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: mustQuantity("100m"), corev1.ResourceMemory: mustQuantity("96Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: mustQuantity("384Mi")},
	}
	if diff := cmp.Diff(wantRes, c.Resources); diff != "" {
		t.Errorf("agent resources (-want +got):\n%s", diff)
	}
	pod := ds.Spec.Template.Spec
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists || pod.Tolerations[0].Key != "" {
		t.Errorf("agent tolerations %+v, want one that tolerates every taint", pod.Tolerations)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("agent pod mounts a service account token; it never talks to the API")
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("agent priority class %q", pod.PriorityClassName)
	}

	cfg := agentConfigOf(t, o)
	if cfg.Output != agentconfig.OutputCollector || cfg.Collector.Address != "watchpost-collector.watchpost.svc:7443" ||
		cfg.Collector.ServerName != "watchpost-collector.watchpost.svc" || cfg.Host != "gw-test" || cfg.Collector.AgentID != "gw-test" ||
		cfg.Collector.Cert != "/run/secrets/watchpost/agent-gw-test.pem" || cfg.ProcRoot != "/host/proc" || cfg.CgroupRoot != "/host/sys/fs/cgroup" ||
		cfg.Spool.Dir != "/var/lib/watchpost/spool" || cfg.Commands.Dir != "/var/lib/watchpost/commands" || cfg.MetricsAddr != "0.0.0.0:9464" {
		t.Errorf("rendered agent.yaml: %+v", cfg)
	}
	if len(cfg.Container.Runtimes) != 1 || cfg.Container.Runtimes[0].Path != "/run/watchpost/runtime/containerd.sock" {
		t.Errorf("container runtimes %+v", cfg.Container.Runtimes)
	}

	if len(o.statefulSets) != 1 {
		t.Fatalf("%d StatefulSets, want 1", len(o.statefulSets))
	}
	ss := o.statefulSets[0]
	cc := ss.Spec.Template.Spec.Containers[0]
	psc := ss.Spec.Template.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("collector pod security context %+v, want a non-root user", psc)
	}
	if got := cc.SecurityContext.Capabilities; got == nil || len(got.Add) != 0 || !slices.Equal(got.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("collector capabilities %+v, want none", got)
	}
	for what, p := range map[string]*corev1.Probe{"startup": cc.StartupProbe, "liveness": cc.LivenessProbe, "readiness": cc.ReadinessProbe} {
		if p == nil || p.TCPSocket == nil || p.TCPSocket.Port.String() != "ingest" {
			t.Errorf("collector %s probe %+v, want TCP on ingest", what, p)
		}
	}
	if got := cc.Resources.Requests.Memory().String(); got != "128Mi" {
		t.Errorf("collector memory request %s", got)
	}
	if len(ss.Spec.VolumeClaimTemplates) != 1 || ss.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "20Gi" {
		t.Errorf("collector volume claims %+v", ss.Spec.VolumeClaimTemplates)
	}
	if len(o.services) != 1 || len(o.services[0].Spec.Ports) != 1 || o.services[0].Spec.Ports[0].Port != 7443 {
		t.Errorf("services %+v, want the ingest port only (query on loopback without tokens)", o.services)
	}
	ccfg := collectorConfigOf(t, o)
	if ccfg.Query.Listen != "127.0.0.1:7444" || ccfg.Ingest.Listen != "0.0.0.0:7443" || ccfg.DataDir != "/var/lib/watchpost-collector" {
		t.Errorf("rendered collector.yaml: %+v", ccfg)
	}
	if len(o.issuers)+len(o.certificates) != 0 {
		t.Error("cert-manager objects without certManager.enabled")
	}
}

func TestChartPrivilegedFallback(t *testing.T) {
	o := renderValues(t, "privileged-values.yaml")
	_, c := agentContainer(t, o)
	if c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Fatal("agent.privileged: true did not make the agent privileged")
	}
	if c.SecurityContext.Capabilities != nil {
		t.Errorf("privileged agent still lists capabilities %+v", c.SecurityContext.Capabilities)
	}
	if o.daemonSets[0].Spec.Template.Spec.HostPID {
		t.Error("privileged fallback turned on hostPID")
	}
	cc := o.statefulSets[0].Spec.Template.Spec.Containers[0]
	if *cc.SecurityContext.Privileged {
		t.Error("collector privileged")
	}
}

func TestChartCertManager(t *testing.T) {
	o := renderValues(t, "cert-manager-values.yaml")
	noPrivilegedContainer(t, o)
	if len(o.issuers) != 1 || o.issuers[0].Spec.CA.SecretName != "watchpost-ca" {
		t.Errorf("issuers %+v, want a CA issuer from watchpost-ca", o.issuers)
	}
	byName := map[string]certificate{}
	for _, c := range o.certificates {
		byName[c.Name] = c
		if c.Spec.IssuerRef.Name != "watchpost-ca" || c.Spec.PrivateKey.Algorithm != "ECDSA" {
			t.Errorf("certificate %s: issuer %+v key %+v", c.Name, c.Spec.IssuerRef, c.Spec.PrivateKey)
		}
	}
	if c := byName["watchpost-collector"]; c.Spec.CommonName != "watchpost-collector.watchpost.svc" || !slices.Equal(c.Spec.Usages, []string{"server auth"}) {
		t.Errorf("collector certificate %+v", c.Spec)
	}
	for _, node := range []string{"gw-01", "gw-02"} {
		c := byName["watchpost-agent-"+node]
		if c.Spec.CommonName != node || c.Spec.SecretName != "watchpost-agent-"+node || !slices.Equal(c.Spec.Usages, []string{"client auth"}) {
			t.Errorf("agent certificate for %s: %+v", node, c.Spec)
		}
	}
	if len(o.certificates) != 3 {
		t.Errorf("%d certificates, want 3", len(o.certificates))
	}
	ds, _ := agentContainer(t, o)
	var tls *corev1.Volume
	for i, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == "tls" {
			tls = &ds.Spec.Template.Spec.Volumes[i]
		}
	}
	if tls == nil || tls.Projected == nil || len(tls.Projected.Sources) != 2 {
		t.Fatalf("agent tls volume %+v, want the nodes' Secrets projected", tls)
	}
	wantItems := []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.pem"}, {Key: "tls.crt", Path: "agent-gw-01.pem"}, {Key: "tls.key", Path: "agent-gw-01-key.pem"}}
	if diff := cmp.Diff(wantItems, tls.Projected.Sources[0].Secret.Items); diff != "" {
		t.Errorf("first node's certificate files (-want +got):\n%s", diff)
	}
	ccfg := collectorConfigOf(t, o)
	if ccfg.Query.Listen != "0.0.0.0:7444" || len(ccfg.Query.Tokens) != 1 || ccfg.Query.CertFile == "" {
		t.Errorf("collector query with tokens: %+v", ccfg.Query)
	}
	if ports := o.services[0].Spec.Ports; len(ports) != 2 || ports[1].Name != "query" {
		t.Errorf("service ports %+v, want ingest and query", ports)
	}
}

// cert-manager without a node list would leave the agents without
// certificates: the chart refuses it, naming the key.
func TestChartCertManagerNeedsNodes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(p, []byte("certManager:\n  enabled: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := renderFile(p)
	if err == nil || !strings.Contains(err.Error(), "certManager.nodes: list the nodes") {
		t.Fatalf("rendering cert-manager without nodes: %v", err)
	}
}

func TestChartWithoutCollector(t *testing.T) {
	o := renderValues(t, "no-collector-values.yaml")
	noPrivilegedContainer(t, o)
	if len(o.statefulSets)+len(o.services)+len(o.secrets) != 0 {
		t.Errorf("collector objects rendered with collector.enabled false: %d StatefulSets, %d Services, %d Secrets",
			len(o.statefulSets), len(o.services), len(o.secrets))
	}
	cfg := agentConfigOf(t, o)
	if cfg.Collector.Address != "collector.plant.example:7443" || cfg.Collector.ServerName != "collector.plant.example" {
		t.Errorf("agent collector %+v", cfg.Collector)
	}
}

// agentConfigOf loads the rendered agent.yaml with the agent's own loader
// (unknown keys are errors) on a node called gw-test, and validates it.
func agentConfigOf(t *testing.T, o objects) agentconfig.Config {
	t.Helper()
	var body string
	for _, cm := range o.configMaps {
		if cm.Name == "watchpost-agent" {
			body = cm.Data["agent.yaml"]
		}
	}
	if body == "" {
		t.Fatal("no agent.yaml in the watchpost-agent ConfigMap")
	}
	t.Setenv("NODE_NAME", "gw-test")
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := agentconfig.Load(p)
	if err != nil {
		t.Fatalf("rendered agent.yaml: %v\n%s", err, body)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("rendered agent.yaml: %v\n%s", err, body)
	}
	return cfg
}

func collectorConfigOf(t *testing.T, o objects) collector.Config {
	t.Helper()
	var body []byte
	for _, s := range o.secrets {
		if s.Name == "watchpost-collector-config" {
			body = []byte(s.StringData["collector.yaml"])
		}
	}
	if body == nil {
		t.Fatal("no collector.yaml in the watchpost-collector-config Secret")
	}
	p := filepath.Join(t.TempDir(), "collector.yaml")
	if err := os.WriteFile(p, body, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := collector.DefaultConfig()
	if err := cfg.LoadFile(p); err != nil {
		t.Fatalf("rendered collector.yaml: %v\n%s", err, body)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("rendered collector.yaml: %v\n%s", err, body)
	}
	return cfg
}

const plainHeader = `# Watchpost for clusters without Helm: the chart in deploy/helm/watchpost
# rendered with its default values, release "watchpost", namespace "watchpost".
# Generated by ` + "`make manifests`" + `; do not edit (CI checks it is fresh).
#
#   kubectl create namespace watchpost
#   kubectl -n watchpost create secret generic watchpost-agent-certs --from-file=PKI/ca.pem --from-file=PKI/agent-NODE.pem ...
#   kubectl -n watchpost create secret generic watchpost-collector-certs --from-file=PKI/ca.pem --from-file=PKI/server.pem --from-file=PKI/server-key.pem
#   kubectl apply -f watchpost.yaml
#
# docs/deploy.md explains each step.
`

func TestPlainManifestsAreRendered(t *testing.T) {
	got := plainHeader + render(t, filepath.Join(chartDir, "ci", "default-values.yaml"))
	decode(t, got)
	if *update {
		if err := os.MkdirAll(filepath.Dir(plainFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(plainFile, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(plainFile)
	if err != nil {
		t.Fatalf("%v (run `make manifests`)", err)
	}
	if !bytes.Equal(want, []byte(got)) {
		t.Errorf("deploy/kubernetes/watchpost.yaml is not what the chart renders; run `make manifests`:\n%s", cmp.Diff(string(want), got))
	}
}
