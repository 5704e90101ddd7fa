// Command objcmp tells whether a regenerated BPF object matches the
// committed one. Identical bytes match. When the bytes differ it compares
// what the kernel is given: every program (section, type, attach target,
// license, instructions with their map and function references and CO-RE
// relocations), every map specification and every BTF type the object
// defines. Objects that agree on all of that match, and the sections that
// differ are listed so the difference can be traced; objects that disagree
// fail with the first program, map or type that differs.
//
//	go run ./scripts/objcmp COMMITTED.o REGENERATED.o [COMMITTED.o REGENERATED.o ...]
//
// `make check-generated` runs it for each object bpf2go writes.
package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 || len(args)%2 != 0 {
		fmt.Fprintln(os.Stderr, "usage: objcmp COMMITTED.o REGENERATED.o [COMMITTED.o REGENERATED.o ...]")
		os.Exit(2)
	}
	failed := false
	for i := 0; i < len(args); i += 2 {
		same, report, err := compareFiles(args[i], args[i+1])
		switch {
		case err != nil:
			fmt.Fprintf(os.Stderr, "objcmp: %s: %v\n", args[i+1], err)
			failed = true
		case !same:
			fmt.Fprintf(os.Stderr, "objcmp: %s is stale: %s\n", args[i+1], report)
			failed = true
		case report != "":
			fmt.Printf("objcmp: %s: same programs, maps and types; bytes differ in %s\n", args[i+1], report)
		}
	}
	if failed {
		os.Exit(1)
	}
}

// compareFiles returns whether the two objects load the same programs, maps
// and types. When they do but the bytes differ, report names the ELF
// sections that differ; when they do not, report says what differs first.
func compareFiles(committed, regenerated string) (same bool, report string, err error) {
	a, err := os.ReadFile(committed)
	if err != nil {
		return false, "", err
	}
	b, err := os.ReadFile(regenerated)
	if err != nil {
		return false, "", err
	}
	if bytes.Equal(a, b) {
		return true, "", nil
	}
	sections, err := sectionDiff(a, b)
	if err != nil {
		return false, "", err
	}
	da, err := describe(a)
	if err != nil {
		return false, "", fmt.Errorf("committed object: %w", err)
	}
	db, err := describe(b)
	if err != nil {
		return false, "", fmt.Errorf("regenerated object: %w", err)
	}
	if diff := firstDiff(da, db); diff != "" {
		return false, diff + " (sections that differ: " + sections + ")", nil
	}
	return true, sections, nil
}

// describe renders everything the loader takes from an object as sorted
// "kind name: text" entries.
func describe(obj []byte) (map[string]string, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, p := range spec.Programs {
		var sb strings.Builder
		fmt.Fprintf(&sb, "section=%s type=%s attach=%s/%s license=%s\n", p.SectionName, p.Type, p.AttachType, p.AttachTo, p.License)
		for _, ins := range p.Instructions {
			fmt.Fprintf(&sb, "%v", ins)
			if s := ins.Symbol(); s != "" {
				fmt.Fprintf(&sb, " sym=%s", s)
			}
			if r := ins.Reference(); r != "" {
				fmt.Fprintf(&sb, " ref=%s", r)
			}
			if c := btf.CORERelocationMetadata(&ins); c != nil {
				fmt.Fprintf(&sb, " %s", c)
			}
			sb.WriteByte('\n')
		}
		out["program "+name] = sb.String()
	}
	for name, m := range spec.Maps {
		var sb strings.Builder
		fmt.Fprintf(&sb, "type=%s key=%d value=%d entries=%d flags=%#x pinning=%d inner=%v\n",
			m.Type, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags, m.Pinning, m.InnerMap != nil)
		for _, kv := range m.Contents {
			fmt.Fprintf(&sb, "%v=%v\n", kv.Key, kv.Value)
		}
		if m.Key != nil {
			fmt.Fprintf(&sb, "key %s\n", typeText(m.Key))
		}
		if m.Value != nil {
			fmt.Fprintf(&sb, "value %s\n", typeText(m.Value))
		}
		out["map "+name] = sb.String()
	}
	if spec.Types != nil {
		for typ, err := range spec.Types.All() {
			if err != nil {
				return nil, err
			}
			name := typ.TypeName()
			if name == "" {
				continue
			}
			key := fmt.Sprintf("type %T %s", typ, name)
			out[key] += typeText(typ)
		}
	}
	return out, nil
}

// typeText renders a type with its members, one level deep, so a change in
// a struct's layout shows.
func typeText(typ btf.Type) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%v", typ)
	switch t := typ.(type) {
	case *btf.Struct:
		for _, m := range t.Members {
			fmt.Fprintf(&sb, " {%s %v @%d:%d}", m.Name, m.Type, m.Offset, m.BitfieldSize)
		}
	case *btf.Union:
		for _, m := range t.Members {
			fmt.Fprintf(&sb, " {%s %v @%d:%d}", m.Name, m.Type, m.Offset, m.BitfieldSize)
		}
	case *btf.Enum:
		for _, v := range t.Values {
			fmt.Fprintf(&sb, " {%s=%d}", v.Name, v.Value)
		}
	}
	return sb.String() + "\n"
}

// firstDiff names the first entry present in only one description or
// different between them, or returns "".
func firstDiff(a, b map[string]string) string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		va, oka := a[k]
		vb, okb := b[k]
		switch {
		case !oka:
			return k + " is new"
		case !okb:
			return k + " is gone"
		case va != vb:
			return k + " differs: " + firstLineDiff(va, vb)
		}
	}
	return ""
}

func firstLineDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(la) && i < len(lb); i++ {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d: %q became %q", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("%d lines became %d", len(la), len(lb))
}

// sectionDiff lists the ELF sections whose contents or sizes differ.
func sectionDiff(a, b []byte) (string, error) {
	ea, err := elf.NewFile(bytes.NewReader(a))
	if err != nil {
		return "", fmt.Errorf("committed object: %w", err)
	}
	eb, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("regenerated object: %w", err)
	}
	contents := func(f *elf.File) map[string][]byte {
		m := map[string][]byte{}
		for _, s := range f.Sections {
			if s.Type == elf.SHT_NOBITS {
				m[s.Name] = nil
				continue
			}
			data, err := s.Data()
			if err != nil {
				data = []byte(err.Error())
			}
			m[s.Name] = data
		}
		return m
	}
	ca, cb := contents(ea), contents(eb)
	var diff []string
	for name, da := range ca {
		db, ok := cb[name]
		switch {
		case !ok:
			diff = append(diff, name+" (gone)")
		case !bytes.Equal(da, db):
			diff = append(diff, fmt.Sprintf("%s (%d -> %d bytes)", name, len(da), len(db)))
		}
	}
	for name := range cb {
		if _, ok := ca[name]; !ok {
			diff = append(diff, name+" (new)")
		}
	}
	sort.Strings(diff)
	if len(diff) == 0 {
		return "the ELF layout only", nil
	}
	return strings.Join(diff, ", "), nil
}
