package detect

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
)

// userTable maps uids to user names from a passwd file, as Sysmon for
// Linux names users. It is read at start and at every reload.
type userTable struct {
	mu    sync.RWMutex
	names map[uint32]string
}

func loadUsers(path string) *userTable {
	t := &userTable{names: map[uint32]string{}}
	f, err := os.Open(path)
	if err != nil {
		return t
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ":")
		if len(parts) < 3 || strings.HasPrefix(parts[0], "#") {
			continue
		}
		uid, err := strconv.ParseUint(parts[2], 10, 32)
		if err != nil {
			continue
		}
		if _, dup := t.names[uint32(uid)]; !dup {
			t.names[uint32(uid)] = parts[0]
		}
	}
	return t
}

// name returns the user name of uid, or "" when it has none.
func (t *userTable) name(uid uint32) string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.names[uid]
}

// appendName appends the name of uid, or the uid in decimal.
func (t *userTable) appendName(b []byte, uid uint32) []byte {
	if n := t.name(uid); n != "" {
		return append(b, n...)
	}
	return strconv.AppendUint(b, uint64(uid), 10)
}

func (t *userTable) replace(o *userTable) {
	t.mu.Lock()
	t.names = o.names
	t.mu.Unlock()
}
