package detect

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestSigmaHQRules loads an unmodified SigmaHQ rules tree when
// WATCHPOST_SIGMAHQ names one (e.g. a checkout's rules/linux): every
// process_creation, file_event and network_connection rule must load or be
// refused with a message naming the file, the line and the construct.
// The rules are not shipped with Watchpost, so the test skips without it.
func TestSigmaHQRules(t *testing.T) {
	root := os.Getenv("WATCHPOST_SIGMAHQ")
	if root == "" {
		t.Skip("WATCHPOST_SIGMAHQ is not set (a SigmaHQ rules directory, e.g. sigma/rules/linux)")
	}
	var loaded, refused int
	reasons := map[string]int{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(p, ".yml") {
			return err
		}
		dir := filepath.Base(filepath.Dir(p))
		if dir != "process_creation" && dir != "file_event" && dir != "network_connection" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		pf, err := parseFile(p, p, b)
		if err == nil {
			set := compile([]*parsedFile{pf}, nil, nil)
			if len(set.errors) > 0 {
				err = set.errors[0]
			}
		}
		if err != nil {
			refused++
			if !strings.HasPrefix(err.Error(), p+":") {
				t.Errorf("refusal does not name the file and line: %v", err)
			}
			msg := err.Error()[len(p)+1:]
			msg = msg[strings.Index(msg, ":")+2:]
			reasons[msg]++
			return nil
		}
		loaded++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var rs []string
	for r, n := range reasons {
		rs = append(rs, r+" ("+itoa(n)+")")
	}
	sort.Strings(rs)
	t.Logf("%d rules loaded, %d refused:\n%s", loaded, refused, strings.Join(rs, "\n"))
}

func itoa(n int) string { return strconv.Itoa(n) }
