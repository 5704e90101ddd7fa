package collector

import (
	"context"
	"crypto/subtle"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/watchpost/watchpost/collector/store"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

// queryService implements QueryService.
type queryService struct {
	watchpostv1.UnimplementedQueryServiceServer
	c *Collector
}

// toStoreFilter converts the API filter.
func toStoreFilter(f *watchpostv1.EventFilter) store.Filter {
	sf := store.Filter{
		AgentID: f.GetAgentId(), Host: f.GetHost(), Types: f.GetTypes(), PID: f.GetPid(), Exe: f.GetExe(),
		PathPrefix: f.GetPathPrefix(), Port: f.GetPort(), Protocol: f.GetProtocol(), Text: f.GetText(),
	}
	if f.GetSinceUnixNano() != 0 {
		sf.Since = time.Unix(0, f.GetSinceUnixNano())
	}
	if f.GetUntilUnixNano() != 0 {
		sf.Until = time.Unix(0, f.GetUntilUnixNano())
	}
	return sf
}

func (q *queryService) QueryEvents(ctx context.Context, req *watchpostv1.QueryEventsRequest) (*watchpostv1.QueryEventsResponse, error) {
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = q.c.cfg.Query.DefaultLimit
	}
	limit = min(limit, q.c.cfg.Query.MaxLimit)
	if req.GetFilter().GetPort() > 65535 {
		return nil, status.Error(codes.InvalidArgument, "filter.port: not a port number")
	}
	f := toStoreFilter(req.GetFilter())
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return nil, status.Error(codes.InvalidArgument, "filter.until: before filter.since")
	}
	// A deadline and a row bound for every query, and at most
	// max_concurrent at once: a query cannot starve ingest.
	ctx, cancel := context.WithTimeout(ctx, q.c.cfg.Query.Timeout)
	defer cancel()
	select {
	case q.c.queries <- struct{}{}:
		defer func() { <-q.c.queries }()
	case <-ctx.Done():
		return &watchpostv1.QueryEventsResponse{CostLimited: true}, nil
	}
	res, err := q.c.store.Query(ctx, store.Query{Filter: f, Limit: limit, MaxRows: q.c.cfg.Query.MaxScanRows})
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		q.c.log.Error().Err(err).Msg("query failed")
		return nil, status.Error(codes.Internal, "query failed")
	}
	return &watchpostv1.QueryEventsResponse{Events: res.Events, Truncated: res.Truncated, CostLimited: res.CostLimited,
		RowsScanned: res.RowsScanned, SummariesRead: res.SummariesRead}, nil
}

func (q *queryService) TailEvents(req *watchpostv1.TailEventsRequest, st grpc.ServerStreamingServer[watchpostv1.TailEventsResponse]) error {
	sub := q.c.hub.subscribe(toStoreFilter(req.GetFilter()))
	defer q.c.hub.unsubscribe(sub)
	// An empty first message tells the client the subscription is live.
	if err := st.Send(&watchpostv1.TailEventsResponse{}); err != nil {
		return err
	}
	for {
		select {
		case <-st.Context().Done():
			return nil
		case <-sub.done:
			return status.Error(codes.Unavailable, "collector shutting down")
		case evs := <-sub.ch:
			if err := st.Send(&watchpostv1.TailEventsResponse{Events: evs, Dropped: sub.takeDropped()}); err != nil {
				return err
			}
		}
	}
}

func (q *queryService) ListHosts(ctx context.Context, _ *watchpostv1.ListHostsRequest) (*watchpostv1.ListHostsResponse, error) {
	hosts, err := q.c.store.Hosts(ctx)
	if err != nil {
		q.c.log.Error().Err(err).Msg("listing hosts failed")
		return nil, status.Error(codes.Internal, "listing hosts failed")
	}
	share := q.c.cfg.Retention.MaxBytesPerAgent
	if share == 0 && len(hosts) > 0 {
		share = q.c.cfg.Retention.MaxBytes / int64(len(hosts))
	}
	for _, h := range hosts {
		h.QuotaBytes = uint64(share)
		if v, ok := q.c.lastSerial.Load(h.AgentId); ok {
			h.CertSerial = v.(string)
		}
		if a, ok := q.c.agents.Load(h.AgentId); ok {
			st := a.(*agentState)
			st.mu.Lock()
			h.LiveCertificates = uint32(len(st.certs))
			st.mu.Unlock()
		}
		h.Revoked = q.c.revocations.isRevoked(h.AgentId)
	}
	return &watchpostv1.ListHostsResponse{Hosts: hosts}, nil
}

func (q *queryService) EnforceRetention(ctx context.Context, _ *watchpostv1.EnforceRetentionRequest) (*watchpostv1.EnforceRetentionResponse, error) {
	dropped, err := q.c.enforceRetention(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "retention: %v", err)
	}
	return &watchpostv1.EnforceRetentionResponse{DroppedPartitions: dropped}, nil
}

// adminMethods need the admin role.
var adminMethods = map[string]bool{
	watchpostv1.QueryService_EnforceRetention_FullMethodName: true,
	watchpostv1.QueryService_UpdateAlerts_FullMethodName:     true,
	watchpostv1.QueryService_AddException_FullMethodName:     true,
	watchpostv1.QueryService_BaselineCommand_FullMethodName:  true,
	watchpostv1.QueryService_RemoveException_FullMethodName:  true,
}

// localCaller is who calls when no token is needed (loopback without tokens).
const localCaller = "local"

type callerKey struct{}

// withCaller records the authorized caller's name for methods that keep it
// (alert triage).
func withCaller(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, callerKey{}, name)
}

// caller is the name withCaller recorded.
func caller(ctx context.Context) string {
	if s, _ := ctx.Value(callerKey{}).(string); s != "" {
		return s
	}
	return localCaller
}

// authorize checks a bearer token against the configured tokens and the
// role the method needs, and returns the caller's name. Without tokens on
// a loopback listener every caller is admitted as "local".
func (c *Collector) authorize(authorization, method string) (string, error) {
	if !c.authNeeded {
		return localCaller, nil
	}
	tok, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok || tok == "" {
		return "", status.Error(codes.Unauthenticated, "bearer token required")
	}
	var found *Token
	for k, t := range c.tokens {
		if subtle.ConstantTimeCompare([]byte(k), []byte(tok)) == 1 {
			found = &t
		}
	}
	if found == nil {
		if !c.authFailures.Allow() {
			c.authThrottled.Add(1)
			return "", status.Error(codes.ResourceExhausted, "too many unknown tokens (query.auth_failures_per_second); wait")
		}
		return "", status.Error(codes.Unauthenticated, "unknown token")
	}
	if adminMethods[method] && found.Role != RoleAdmin {
		return "", status.Errorf(codes.PermissionDenied, "token %q has role %s; %s needs admin", found.Name, found.Role, method)
	}
	return found.Name, nil
}

func authHeader(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c *Collector) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	who, err := c.authorize(authHeader(ctx), info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(withCaller(ctx, who), req)
}

func (c *Collector) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if _, err := c.authorize(authHeader(ss.Context()), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}
