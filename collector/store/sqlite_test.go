package store_test

import (
	"context"
	"os"
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

// TestQueryCostDoesNotGrowWithTinyBatches stores 20,000 events as 20,000
// one-event batches (a flood of tiny batches) and as 20 batches of 1,000:
// a query reads the same three block summaries either way (8,192 rows
// each), not one per batch.
func TestQueryCostDoesNotGrowWithTinyBatches(t *testing.T) {
	for _, size := range []int{1, 1000} {
		s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "events.db"))
		if err != nil {
			t.Fatal(err)
		}
		var in []store.BatchInput
		for i := 0; i < 20000; i += size {
			in = append(in, storetest.Batch("a", "boot-1", uint64(i+1), i, i+size))
			if len(in) == 200 || i+size >= 20000 {
				if _, err := s.StoreBatches(context.Background(), in); err != nil {
					t.Fatal(err)
				}
				in = in[:0]
			}
		}
		res, err := s.Query(context.Background(), store.Query{Filter: store.Filter{PID: 1007}, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if res.SummariesRead != 3 || len(res.Events) != 10 {
			t.Errorf("batches of %d events: %d summaries read, %d events; want 3 and 10", size, res.SummariesRead, len(res.Events))
		}
		_ = s.Close()
	}
}

// TestFilesArePrivateWhateverExists: a data directory made 0755 and a
// database file made 0644 beforehand (say by an installer) are made
// 0700 and 0600 when the store opens, the WAL and shared-memory files too.
func TestFilesArePrivateWhateverExists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "events.db")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask did
		t.Fatal(err)
	}
	s, err := store.OpenSQLite(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StoreBatches(context.Background(), []store.BatchInput{storetest.Batch("a", "boot-1", 1, 0, 10)}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for p, want := range map[string]os.FileMode{dir: 0o700, file: 0o600, file + "-wal": 0o600, file + "-shm": 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", p, got, want)
		}
	}
}
