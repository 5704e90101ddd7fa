package postgres_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/watchpost/watchpost/collector/store"
	"github.com/watchpost/watchpost/collector/store/postgres"
	"github.com/watchpost/watchpost/collector/store/storetest"
	"github.com/watchpost/watchpost/internal/services"
)

var (
	pg      *services.Postgres
	pgError error
	dbs     atomic.Int64
)

func TestMain(m *testing.M) {
	pg, pgError = services.StartPostgres(context.Background(), "")
	code := m.Run()
	if pg != nil {
		pg.Close()
	}
	os.Exit(code)
}

// openDB returns a store on a new, empty database of the test server.
func openDB(t *testing.T) *postgres.Store {
	t.Helper()
	if pgError != nil {
		if services.Required() {
			t.Fatalf("postgresql: %v", pgError)
		}
		t.Skipf("postgresql not available: %v", pgError)
	}
	ctx := context.Background()
	url, err := pg.CreateDatabase(ctx, fmt.Sprintf("t%d", dbs.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPostgresSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openDB(t) })
}
