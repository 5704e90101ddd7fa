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
	var res store.QueryResult
	err := q.c.bounded(ctx, "query", func(ctx context.Context) (err error) {
		res, err = q.c.store.Query(ctx, store.Query{Filter: f, Limit: limit, MaxRows: q.c.cfg.Query.MaxScanRows})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &watchpostv1.QueryEventsResponse{Events: res.Events, Truncated: res.Truncated, CostLimited: res.CostLimited,
		RowsScanned: res.RowsScanned, SummariesRead: res.SummariesRead}, nil
}

// queryBudgetKey marks a context whose deadline is a request's query
// budget; its value is the caller's own context.
type queryBudgetKey struct{}

// querySlotKey marks a context that holds a query.max_concurrent slot.
type querySlotKey struct{}

// withQueryBudget gives every store read of one request, however many,
// query.timeout in all (a dashboard view that reads alerts, hosts and
// events shares it).
func (c *Collector) withQueryBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	qctx, cancel := context.WithTimeout(ctx, c.cfg.Query.Timeout)
	return context.WithValue(qctx, queryBudgetKey{}, ctx), cancel
}

// bounded runs read, store reads on behalf of a client, under the query
// limits: the request's budget of query.timeout is its deadline (the wait
// for a slot included) and it holds one of query.max_concurrent slots, so
// that no client keeps the store from ingest longer or more often than
// that. Every request that reads the store for a client (events, alerts,
// an alert's events, hosts, exceptions; the CLI, the HTTP API and the
// dashboard call these) goes through it. A request that finds no slot in
// time, or whose reads outlast its budget, is refused ResourceExhausted
// naming the limit; one whose caller went away ends with the caller's
// context error. Other errors of read are passed on when they are gRPC
// statuses, and logged and answered Internal otherwise. A read may call
// bounded again: it runs in the slot and budget it already has.
func (c *Collector) bounded(ctx context.Context, what string, read func(ctx context.Context) error) error {
	if ctx.Value(querySlotKey{}) != nil {
		// Called from within bounded: the same request, slot and budget.
		return read(ctx)
	}
	if _, ok := ctx.Value(queryBudgetKey{}).(context.Context); !ok {
		var cancel context.CancelFunc
		ctx, cancel = c.withQueryBudget(ctx)
		defer cancel()
	}
	caller := ctx.Value(queryBudgetKey{}).(context.Context)
	select {
	case c.queries <- struct{}{}:
		defer func() { <-c.queries }()
		ctx = context.WithValue(ctx, querySlotKey{}, true)
	case <-ctx.Done():
		if caller.Err() != nil {
			return status.FromContextError(caller.Err()).Err()
		}
		c.queriesBusy.Add(1)
		return status.Errorf(codes.ResourceExhausted, "%s: query.max_concurrent (%d) requests kept the store busy for all of query.timeout (%s); try again",
			what, c.cfg.Query.MaxConcurrent, c.cfg.Query.Timeout)
	}
	err := read(ctx)
	switch {
	case err == nil:
		return nil
	case caller.Err() != nil:
		return status.FromContextError(caller.Err()).Err()
	case ctx.Err() != nil:
		c.queriesTimedOut.Add(1)
		return status.Errorf(codes.ResourceExhausted, "%s: took longer than query.timeout (%s); narrow the time range or the filter", what, c.cfg.Query.Timeout)
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	c.log.Error().Err(err).Msg(what + " failed")
	return status.Error(codes.Internal, what+" failed")
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
	hosts, err := q.c.storedHosts(ctx)
	if err != nil {
		return nil, err
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
	watchpostv1.QueryService_PolicyCommand_FullMethodName:    true,
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
