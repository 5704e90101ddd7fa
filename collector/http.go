package collector

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/watchpost/watchpost/collector/filter"
	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false}

// queryHandler serves gRPC (HTTP/2, application/grpc) and the HTTP/JSON API
// on the query port. The JSON endpoints call the same QueryService methods,
// through the same authorization.
func (c *Collector) queryHandler() http.Handler {
	q := &queryService{c: c}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("GET /metrics", c.metricsHandler())
	mux.HandleFunc("GET /api/v1/events", c.httpAuth(watchpostv1.QueryService_QueryEvents_FullMethodName, func(w http.ResponseWriter, r *http.Request) {
		f, err := filterFromQuery(r)
		if err != nil {
			httpError(w, status.Error(codes.InvalidArgument, err.Error()))
			return
		}
		var limit uint64
		if s := r.URL.Query().Get("limit"); s != "" {
			if limit, err = strconv.ParseUint(s, 10, 32); err != nil {
				httpError(w, status.Errorf(codes.InvalidArgument, "limit: %q is not a number", s))
				return
			}
		}
		resp, err := q.QueryEvents(r.Context(), &watchpostv1.QueryEventsRequest{Filter: f, Limit: uint32(limit)})
		writeProto(w, resp, err)
	}))
	mux.HandleFunc("GET /api/v1/hosts", c.httpAuth(watchpostv1.QueryService_ListHosts_FullMethodName, func(w http.ResponseWriter, r *http.Request) {
		resp, err := q.ListHosts(r.Context(), &watchpostv1.ListHostsRequest{})
		writeProto(w, resp, err)
	}))
	mux.HandleFunc("POST /api/v1/retention", c.httpAuth(watchpostv1.QueryService_EnforceRetention_FullMethodName, func(w http.ResponseWriter, r *http.Request) {
		resp, err := q.EnforceRetention(r.Context(), &watchpostv1.EnforceRetentionRequest{})
		writeProto(w, resp, err)
	}))
	mux.HandleFunc("GET /api/v1/alerts", c.httpAuth(watchpostv1.QueryService_ListAlerts_FullMethodName, c.httpAlerts))
	mux.HandleFunc("POST /api/v1/alerts", c.httpAuth(watchpostv1.QueryService_UpdateAlerts_FullMethodName, c.httpUpdateAlerts))
	mux.HandleFunc("GET /api/v1/tail", c.httpAuth(watchpostv1.QueryService_TailEvents_FullMethodName, c.httpTail))
	mux.HandleFunc("GET /api/v1/alerts/{id}/events", c.httpAuth(watchpostv1.QueryService_AlertEvents_FullMethodName, func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
		if err != nil {
			httpError(w, status.Errorf(codes.InvalidArgument, "alert id: %q is not a number", r.PathValue("id")))
			return
		}
		resp, err := q.AlertEvents(r.Context(), &watchpostv1.AlertEventsRequest{AlertId: id})
		writeProto(w, resp, err)
	}))
	mux.HandleFunc("GET /api/v1/exceptions", c.httpAuth(watchpostv1.QueryService_ListExceptions_FullMethodName, func(w http.ResponseWriter, r *http.Request) {
		resp, err := q.ListExceptions(r.Context(), &watchpostv1.ListExceptionsRequest{AgentId: r.URL.Query().Get("agent")})
		writeProto(w, resp, err)
	}))
	mux.HandleFunc("POST /api/v1/exceptions", c.httpAuth(watchpostv1.QueryService_AddException_FullMethodName, func(w http.ResponseWriter, r *http.Request) {
		req := &watchpostv1.AddExceptionRequest{}
		if readJSON(w, r, req) {
			resp, err := q.AddException(r.Context(), req)
			writeProto(w, resp, err)
		}
	}))
	mux.HandleFunc("DELETE /api/v1/exceptions/{id}", c.httpAuth(watchpostv1.QueryService_RemoveException_FullMethodName, func(w http.ResponseWriter, r *http.Request) {
		resp, err := q.RemoveException(r.Context(), &watchpostv1.RemoveExceptionRequest{Id: r.PathValue("id")})
		writeProto(w, resp, err)
	}))
	mux.HandleFunc("GET /api/v1/policies", c.httpAuth(watchpostv1.QueryService_ListPolicies_FullMethodName, func(w http.ResponseWriter, r *http.Request) {
		resp, err := q.ListPolicies(r.Context(), &watchpostv1.ListPoliciesRequest{AgentId: r.URL.Query().Get("agent")})
		writeProto(w, resp, err)
	}))
	mux.HandleFunc("POST /api/v1/policies", c.httpAuth(watchpostv1.QueryService_PolicyCommand_FullMethodName, func(w http.ResponseWriter, r *http.Request) {
		req := &watchpostv1.PolicyCommandRequest{}
		if readJSON(w, r, req) {
			resp, err := q.PolicyCommand(r.Context(), req)
			writeProto(w, resp, err)
		}
	}))
	c.mountDashboard(mux)
	// A browser sends state-changing requests of another site with
	// Sec-Fetch-Site or an Origin that is not this listener: refused, token
	// or not. Clients that are not browsers send neither.
	api := http.NewCrossOriginProtection().Handler(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			c.querySrv.ServeHTTP(w, r)
			return
		}
		if c.queryLoopback && !c.hostAllowed(r.Host) {
			c.hostsRefused.Add(1)
			httpError(w, status.Errorf(codes.PermissionDenied, "host %q is not one this loopback listener answers for (query.allowed_hosts)", r.Host))
			return
		}
		api.ServeHTTP(w, r)
	})
}

// loopbackHosts are the Host header values a loopback listener always
// answers for.
var loopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// hostAllowed says whether a request's Host header (with or without port)
// names this loopback listener: a page of another site whose DNS name was
// rebound to 127.0.0.1 sends its own name and is refused.
func (c *Collector) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	for _, ok := range loopbackHosts {
		if strings.EqualFold(host, ok) {
			return true
		}
	}
	for _, ok := range c.cfg.Query.AllowedHosts {
		if strings.EqualFold(host, ok) {
			return true
		}
	}
	return false
}

// httpTail streams newline-delimited JSON TailEventsResponse objects.
func (c *Collector) httpTail(w http.ResponseWriter, r *http.Request) {
	f, err := filterFromQuery(r)
	if err != nil {
		httpError(w, status.Error(codes.InvalidArgument, err.Error()))
		return
	}
	sub := c.hub.subscribe(toStoreFilter(f))
	defer c.hub.unsubscribe(sub)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.done:
			return
		case evs := <-sub.ch:
			b, err := jsonOpts.Marshal(&watchpostv1.TailEventsResponse{Events: evs, Dropped: sub.takeDropped()})
			if err != nil {
				return
			}
			if _, err := w.Write(append(b, '\n')); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

func (c *Collector) httpAuth(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, err := c.authorize(r.Header.Get("Authorization"), method)
		if err != nil {
			httpError(w, err)
			return
		}
		h(w, r.WithContext(withCaller(r.Context(), who)))
	}
}

func filterFromQuery(r *http.Request) (*watchpostv1.EventFilter, error) {
	v := r.URL.Query()
	return filter.Parse(filter.Params{
		Agent: v.Get("agent"), Host: v.Get("host"), Types: v.Get("type"), PID: v.Get("pid"), Exe: v.Get("exe"),
		Path: v.Get("path"), Port: v.Get("port"), Protocol: v.Get("protocol"), Since: v.Get("since"),
		Until: v.Get("until"), Text: v.Get("text"),
	}, time.Now())
}

func writeProto(w http.ResponseWriter, m proto.Message, err error) {
	if err != nil {
		httpError(w, err)
		return
	}
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		httpError(w, status.Error(codes.Internal, "encoding response"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

var httpStatus = map[codes.Code]int{
	codes.InvalidArgument:   http.StatusBadRequest,
	codes.Unauthenticated:   http.StatusUnauthorized,
	codes.PermissionDenied:  http.StatusForbidden,
	codes.NotFound:          http.StatusNotFound,
	codes.ResourceExhausted: http.StatusTooManyRequests,
	codes.Unavailable:       http.StatusServiceUnavailable,
}

// httpError writes {"code": "...", "message": "..."} with a matching status.
func httpError(w http.ResponseWriter, err error) {
	s := status.Convert(err)
	code, ok := httpStatus[s.Code()]
	if !ok {
		code = http.StatusInternalServerError
	}
	if s.Code() == codes.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="watchpost"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": s.Code().String(), "message": s.Message()})
}
