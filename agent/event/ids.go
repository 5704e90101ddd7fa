package event

import "golang.org/x/sys/unix"

// AUID is a login uid (the audit uid: the human behind a process). The
// kernel's (uid_t)-1 means unset, a process no login started; it is absent
// from JSON and proto, never the number 4294967295.
type AUID uint32

// AUIDUnset is the kernel's value of an unset login uid.
const AUIDUnset AUID = ^AUID(0)

// IsZero reports an unset login uid (omitzero in JSON).
func (a AUID) IsZero() bool { return a == AUIDUnset }

// Set returns the login uid and whether it is set.
func (a AUID) Set() (uint32, bool) { return uint32(a), a != AUIDUnset }

// ErrnoName is the symbolic name of the errno in a failed syscall's
// return value (-13: "EACCES"); "" for a success or an unknown number.
// Every event detail with a result names its errno through it.
func ErrnoName(result int64) string {
	if result >= 0 || result < -4095 {
		return ""
	}
	return unix.ErrnoName(unix.Errno(-result))
}

// ID returns a pointer to id, for the presence-carrying id fields.
func ID[T ~int | ~uint32 | ~int32 | ~int64](id T) *int64 {
	v := int64(id)
	return &v
}
