// Package eventtype names the event types of the wire schema: the stable
// names used in queries, the CLI, JSON and configuration (exec, file_open,
// net_udp_flow ...) are the EventType enum value names without their
// EVENT_TYPE_ prefix, in lower case. The agent and the collector share this
// contract through the schema, not through each other's packages.
package eventtype

import (
	"fmt"
	"sort"
	"strings"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

const prefix = "EVENT_TYPE_"

var (
	names  = map[watchpostv1.EventType]string{}
	byName = map[string]watchpostv1.EventType{}
	all    []watchpostv1.EventType
)

func init() {
	vals := watchpostv1.EventType(0).Descriptor().Values()
	for i := 0; i < vals.Len(); i++ {
		v := vals.Get(i)
		t := watchpostv1.EventType(v.Number())
		if t == watchpostv1.EventType_EVENT_TYPE_UNSPECIFIED {
			continue
		}
		n := strings.ToLower(strings.TrimPrefix(string(v.Name()), prefix))
		names[t], byName[n] = n, t
		all = append(all, t)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
}

// Name is the stable name of t; an unknown value is "kind(N)".
func Name(t watchpostv1.EventType) string {
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", int32(t))
}

// Parse maps a stable name back to its type.
func Parse(name string) (watchpostv1.EventType, error) {
	if t, ok := byName[name]; ok {
		return t, nil
	}
	return watchpostv1.EventType_EVENT_TYPE_UNSPECIFIED, fmt.Errorf("unknown event type %q", name)
}

// All lists every known type in numeric order.
func All() []watchpostv1.EventType { return append([]watchpostv1.EventType(nil), all...) }
