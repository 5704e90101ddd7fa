package store_test

import (
	"path/filepath"
	"testing"

	"github.com/watchpost/watchpost/collector/store"
	"github.com/watchpost/watchpost/collector/store/storetest"
)

func TestSQLiteSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "events.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
