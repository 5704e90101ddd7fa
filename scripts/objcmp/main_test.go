package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const object = "../../agent/kernel/wp_x86_bpfel.o"

func TestSameObjectMatches(t *testing.T) {
	same, report, err := compareFiles(object, object)
	if err != nil || !same || report != "" {
		t.Fatalf("an object against itself: same %v, report %q, err %v", same, report, err)
	}
}

// A changed instruction is what the check exists for: it must fail and
// name the program.
func TestChangedInstructionIsStale(t *testing.T) {
	data, err := os.ReadFile(object)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	sec := f.Section("tp_btf/sched_process_exec")
	if sec == nil {
		t.Fatal("no tp_btf/sched_process_exec section")
	}
	changed := append([]byte(nil), data...)
	patched := false
	for off := uint64(0); off+8 <= sec.Size; off += 8 {
		at := sec.Offset + off
		if changed[at] == 0xb7 { // mov64 dst, imm: change the immediate
			changed[at+4] ^= 0x5a
			patched = true
			break
		}
	}
	if !patched {
		t.Fatal("no mov64 immediate in wp_sched_exec to change")
	}
	other := filepath.Join(t.TempDir(), "wp.o")
	if err := os.WriteFile(other, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	same, report, err := compareFiles(object, other)
	if err != nil {
		t.Fatal(err)
	}
	if same || !strings.Contains(report, "program wp_sched_exec differs") || !strings.Contains(report, "tp_btf/sched_process_exec") {
		t.Fatalf("changed instruction: same %v, report %q", same, report)
	}
}

// Objects that differ only in debug line information (a header's line
// numbers moved) load the same programs: they match, and the report names
// the section.
func TestLineInfoOnlyMatches(t *testing.T) {
	data, err := os.ReadFile(object)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	ext := f.Section(".BTF.ext")
	if ext == nil {
		t.Fatal("no .BTF.ext section")
	}
	le := binary.LittleEndian
	base := ext.Offset
	hdrLen := uint64(le.Uint32(data[base+4:]))
	lineOff := uint64(le.Uint32(data[base+16:]))
	// line info: record size, then per section: name, count, records of
	// insn_off, file_name_off, line_off, line_col.
	first := base + hdrLen + lineOff + 4 + 8
	changed := append([]byte(nil), data...)
	le.PutUint32(changed[first+12:], le.Uint32(data[first+12:])+1<<10) // one line further down
	other := filepath.Join(t.TempDir(), "wp.o")
	if err := os.WriteFile(other, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	same, report, err := compareFiles(object, other)
	if err != nil || !same || !strings.Contains(report, ".BTF.ext") {
		t.Fatalf("line info only: same %v, report %q, err %v", same, report, err)
	}
}
