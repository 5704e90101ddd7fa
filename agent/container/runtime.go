package container

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	ctrdevents "github.com/containerd/containerd/api/events"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	criapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels the kubelet puts on every container (containerd and CRI).
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelContainerName = "io.kubernetes.container.name"
	// nerdctl names its containers with this label.
	labelNerdctlName = "nerdctl/name"
)

// conn is a lazily dialled gRPC connection to a unix socket. Dialling is
// refused while the socket file is absent, so a node without that runtime
// costs a stat now and then.
type conn struct {
	path    string
	timeout time.Duration
	mu      sync.Mutex
	cc      *grpc.ClientConn
}

func (c *conn) get() (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc != nil {
		return c.cc, nil
	}
	if _, err := os.Stat(c.path); err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient("unix://"+c.path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", c.path, err)
	}
	c.cc = cc
	return cc, nil
}

func (c *conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc == nil {
		return nil
	}
	err := c.cc.Close()
	c.cc = nil
	return err
}

// containerd speaks containerd's own API: containers are looked up in the
// namespace the cgroup path names, else in every namespace.
type containerd struct {
	conn
}

func newContainerd(path string, timeout time.Duration) *containerd {
	return &containerd{conn{path: path, timeout: timeout}}
}

func (c *containerd) String() string { return "containerd " + c.path }

func inNamespace(ctx context.Context, ns string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "containerd-namespace", ns)
}

func (c *containerd) Lookup(ctx context.Context, loc Location) (Meta, bool, error) {
	cc, err := c.get()
	if err != nil {
		return Meta{}, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	namespaces := []string{loc.Namespace}
	if loc.Namespace == "" {
		resp, err := namespacesapi.NewNamespacesClient(cc).List(ctx, &namespacesapi.ListNamespacesRequest{})
		if err != nil {
			return Meta{}, false, err
		}
		namespaces = namespaces[:0]
		for _, ns := range resp.GetNamespaces() {
			namespaces = append(namespaces, ns.GetName())
		}
	}
	client := containersapi.NewContainersClient(cc)
	for _, ns := range namespaces {
		resp, err := client.Get(inNamespace(ctx, ns), &containersapi.GetContainerRequest{ID: loc.ID})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			return Meta{}, false, err
		}
		return containerdMeta(resp.GetContainer()), true, nil
	}
	return Meta{}, false, nil
}

func containerdMeta(ct *containersapi.Container) Meta {
	l := ct.GetLabels()
	m := Meta{Image: ct.GetImage(), Name: l[labelContainerName], PodName: l[labelPodName], PodNamespace: l[labelPodNamespace]}
	if m.Name == "" {
		m.Name = l[labelNerdctlName]
	}
	return m
}

// Watch lists the containers of every namespace, then follows container
// create events, so metadata is cached before a container's first exec.
func (c *containerd) Watch(ctx context.Context, announce func(string, Meta)) error {
	cc, err := c.get()
	if err != nil {
		return err
	}
	sub, err := eventsapi.NewEventsClient(cc).Subscribe(ctx, &eventsapi.SubscribeRequest{Filters: []string{`topic=="/containers/create"`}})
	if err != nil {
		return err
	}
	if err := c.list(ctx, cc, announce); err != nil {
		return err
	}
	client := containersapi.NewContainersClient(cc)
	for {
		env, err := sub.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var create ctrdevents.ContainerCreate
		if err := proto.Unmarshal(env.GetEvent().GetValue(), &create); err != nil || create.GetID() == "" {
			continue
		}
		m := Meta{Image: create.GetImage()}
		gctx, cancel := context.WithTimeout(ctx, c.timeout)
		if resp, err := client.Get(inNamespace(gctx, env.GetNamespace()), &containersapi.GetContainerRequest{ID: create.GetID()}); err == nil {
			m = containerdMeta(resp.GetContainer())
		}
		cancel()
		announce(create.GetID(), m)
	}
}

func (c *containerd) list(ctx context.Context, cc *grpc.ClientConn, announce func(string, Meta)) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	nss, err := namespacesapi.NewNamespacesClient(cc).List(ctx, &namespacesapi.ListNamespacesRequest{})
	if err != nil {
		return err
	}
	client := containersapi.NewContainersClient(cc)
	for _, ns := range nss.GetNamespaces() {
		resp, err := client.List(inNamespace(ctx, ns.GetName()), &containersapi.ListContainersRequest{})
		if err != nil {
			return err
		}
		for _, ct := range resp.GetContainers() {
			announce(ct.GetID(), containerdMeta(ct))
		}
	}
	return nil
}

// cri speaks the Kubernetes CRI (CRI-O; containerd's CRI plugin).
type cri struct {
	conn
}

func newCRI(path string, timeout time.Duration) *cri { return &cri{conn{path: path, timeout: timeout}} }

func (c *cri) String() string { return "cri " + c.path }

func (c *cri) Lookup(ctx context.Context, loc Location) (Meta, bool, error) {
	cc, err := c.get()
	if err != nil {
		return Meta{}, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := criapi.NewRuntimeServiceClient(cc).ContainerStatus(ctx, &criapi.ContainerStatusRequest{ContainerId: loc.ID})
	if status.Code(err) == codes.NotFound {
		return Meta{}, false, nil
	}
	if err != nil {
		return Meta{}, false, err
	}
	st := resp.GetStatus()
	l := st.GetLabels()
	m := Meta{Image: st.GetImage().GetImage(), Name: st.GetMetadata().GetName(), PodName: l[labelPodName], PodNamespace: l[labelPodNamespace]}
	if m.Image == "" {
		m.Image = st.GetImageRef()
	}
	return m, true, nil
}

// Watch: the CRI's event stream is not in every runtime; lookups suffice.
func (c *cri) Watch(ctx context.Context, _ func(string, Meta)) error {
	if _, err := c.get(); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
