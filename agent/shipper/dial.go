package shipper

import (
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// pickFirstShuffled connects to one address, chosen at random so that a
// fleet spreads over the collectors, and to the next one when it fails.
const pickFirstShuffled = `{"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": true}}]}`

// dialTarget turns the configured address into a gRPC target: a comma
// list becomes a fixed set of addresses (each verified under its own host
// name); one host:port goes through DNS, which may return several.
func dialTarget(address string) (string, []grpc.DialOption) {
	var addrs []resolver.Address
	for _, a := range strings.Split(address, ",") {
		if a = strings.TrimSpace(a); a != "" {
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				host = a
			}
			addrs = append(addrs, resolver.Address{Addr: a, ServerName: host})
		}
	}
	opts := []grpc.DialOption{grpc.WithDefaultServiceConfig(pickFirstShuffled)}
	if len(addrs) <= 1 {
		return address, opts
	}
	r := manual.NewBuilderWithScheme("watchpost")
	r.InitialState(resolver.State{Addresses: addrs})
	return r.Scheme() + ":///collectors", append(opts, grpc.WithResolvers(r))
}
