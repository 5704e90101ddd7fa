// Package schemacheck lints the Watchpost protobuf schema and checks it for
// breaking changes against the snapshot of the last released schema
// (proto/watchpost/v1/release.binpb). It replaces buf lint/breaking, which
// takes minutes to build here, with the handful of rules the project needs.
package schemacheck

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

var (
	snakeCase   = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	upperSnake  = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$`)
	pascalCase  = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)
	versionedPk = regexp.MustCompile(`^[a-z][a-z0-9]*(\.[a-z][a-z0-9]*)*\.v[0-9]+$`)
)

// Lint returns one message per style violation in the given files:
// versioned package, PascalCase messages, enums and services, snake_case
// fields, UPPER_SNAKE enum values prefixed with the enum name, and a zero
// value named <ENUM>_UNSPECIFIED.
func Lint(files []protoreflect.FileDescriptor) []string {
	var out []string
	for _, fd := range files {
		if !versionedPk.MatchString(string(fd.Package())) {
			out = append(out, fmt.Sprintf("%s: package %q is not versioned (want name.vN)", fd.Path(), fd.Package()))
		}
		if fd.Options().(*descriptorpb.FileOptions).GetGoPackage() == "" {
			out = append(out, fmt.Sprintf("%s: go_package option missing", fd.Path()))
		}
		out = append(out, lintEnums(fd.Path(), fd.Enums())...)
		out = append(out, lintMessages(fd.Path(), fd.Messages())...)
		for i := 0; i < fd.Services().Len(); i++ {
			s := fd.Services().Get(i)
			if !pascalCase.MatchString(string(s.Name())) || !strings.HasSuffix(string(s.Name()), "Service") {
				out = append(out, fmt.Sprintf("%s: service %s: want PascalCase ending in Service", fd.Path(), s.Name()))
			}
			for j := 0; j < s.Methods().Len(); j++ {
				if m := s.Methods().Get(j); !pascalCase.MatchString(string(m.Name())) {
					out = append(out, fmt.Sprintf("%s: rpc %s.%s: want PascalCase", fd.Path(), s.Name(), m.Name()))
				}
			}
		}
	}
	return out
}

func lintMessages(path string, msgs protoreflect.MessageDescriptors) []string {
	var out []string
	for i := 0; i < msgs.Len(); i++ {
		m := msgs.Get(i)
		if !pascalCase.MatchString(string(m.Name())) {
			out = append(out, fmt.Sprintf("%s: message %s: want PascalCase", path, m.FullName()))
		}
		for j := 0; j < m.Fields().Len(); j++ {
			f := m.Fields().Get(j)
			if !snakeCase.MatchString(string(f.Name())) {
				out = append(out, fmt.Sprintf("%s: field %s: want snake_case", path, f.FullName()))
			}
		}
		out = append(out, lintEnums(path, m.Enums())...)
		out = append(out, lintMessages(path, m.Messages())...)
	}
	return out
}

func lintEnums(path string, enums protoreflect.EnumDescriptors) []string {
	var out []string
	for i := 0; i < enums.Len(); i++ {
		e := enums.Get(i)
		if !pascalCase.MatchString(string(e.Name())) {
			out = append(out, fmt.Sprintf("%s: enum %s: want PascalCase", path, e.FullName()))
		}
		prefix := upperSnakeOf(string(e.Name())) + "_"
		for j := 0; j < e.Values().Len(); j++ {
			v := e.Values().Get(j)
			name := string(v.Name())
			if !upperSnake.MatchString(name) || !strings.HasPrefix(name, prefix) {
				out = append(out, fmt.Sprintf("%s: enum value %s: want UPPER_SNAKE_CASE prefixed %s", path, name, prefix))
			}
			if v.Number() == 0 && name != prefix+"UNSPECIFIED" {
				out = append(out, fmt.Sprintf("%s: enum %s: zero value is %s, want %sUNSPECIFIED", path, e.FullName(), name, prefix))
			}
		}
	}
	return out
}

// upperSnakeOf turns PascalCase into UPPER_SNAKE_CASE.
func upperSnakeOf(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// Breaking compares the current schema with the released one and returns
// one message per incompatible change: a message, field, enum, enum value,
// service or method that disappeared; a field or enum value whose number,
// name, type, label or oneof changed. A removed field is accepted only
// when its number and name are both reserved.
func Breaking(released, current *descriptorpb.FileDescriptorSet) []string {
	var out []string
	oldMsgs, oldEnums, oldSvcs := index(released)
	newMsgs, newEnums, newSvcs := index(current)

	for _, name := range sortedKeys(oldMsgs) {
		om := oldMsgs[name]
		nm, ok := newMsgs[name]
		if !ok {
			out = append(out, fmt.Sprintf("message %s removed", name))
			continue
		}
		newByNum := map[int32]*descriptorpb.FieldDescriptorProto{}
		for _, f := range nm.GetField() {
			newByNum[f.GetNumber()] = f
		}
		for _, of := range om.GetField() {
			nf, ok := newByNum[of.GetNumber()]
			if !ok {
				if !reservedNumber(nm, of.GetNumber()) || !reservedName(nm, of.GetName()) {
					out = append(out, fmt.Sprintf("field %s.%s (%d) removed without reserving its number and name", name, of.GetName(), of.GetNumber()))
				}
				continue
			}
			where := fmt.Sprintf("field %s.%s (%d)", name, of.GetName(), of.GetNumber())
			if nf.GetName() != of.GetName() {
				out = append(out, fmt.Sprintf("%s renamed to %s", where, nf.GetName()))
			}
			if nf.GetType() != of.GetType() || nf.GetTypeName() != of.GetTypeName() {
				out = append(out, fmt.Sprintf("%s changed type from %s%s to %s%s", where, of.GetType(), of.GetTypeName(), nf.GetType(), nf.GetTypeName()))
			}
			if nf.GetLabel() != of.GetLabel() {
				out = append(out, fmt.Sprintf("%s changed label from %s to %s", where, of.GetLabel(), nf.GetLabel()))
			}
			if oneofName(om, of) != oneofName(nm, nf) {
				out = append(out, fmt.Sprintf("%s moved from oneof %q to %q", where, oneofName(om, of), oneofName(nm, nf)))
			}
		}
	}
	for _, name := range sortedKeys(oldEnums) {
		oe := oldEnums[name]
		ne, ok := newEnums[name]
		if !ok {
			out = append(out, fmt.Sprintf("enum %s removed", name))
			continue
		}
		newByNum := map[int32]string{}
		for _, v := range ne.GetValue() {
			newByNum[v.GetNumber()] = v.GetName()
		}
		for _, v := range oe.GetValue() {
			n, ok := newByNum[v.GetNumber()]
			switch {
			case !ok && !enumReserved(ne, v.GetNumber(), v.GetName()):
				out = append(out, fmt.Sprintf("enum value %s.%s (%d) removed without reserving its number and name", name, v.GetName(), v.GetNumber()))
			case ok && n != v.GetName():
				out = append(out, fmt.Sprintf("enum value %s.%s (%d) renamed to %s", name, v.GetName(), v.GetNumber(), n))
			}
		}
	}
	for _, name := range sortedKeys(oldSvcs) {
		os := oldSvcs[name]
		ns, ok := newSvcs[name]
		if !ok {
			out = append(out, fmt.Sprintf("service %s removed", name))
			continue
		}
		methods := map[string]*descriptorpb.MethodDescriptorProto{}
		for _, m := range ns.GetMethod() {
			methods[m.GetName()] = m
		}
		for _, om := range os.GetMethod() {
			nm, ok := methods[om.GetName()]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("rpc %s.%s removed", name, om.GetName()))
			case nm.GetInputType() != om.GetInputType() || nm.GetOutputType() != om.GetOutputType() ||
				nm.GetClientStreaming() != om.GetClientStreaming() || nm.GetServerStreaming() != om.GetServerStreaming():
				out = append(out, fmt.Sprintf("rpc %s.%s changed its signature", name, om.GetName()))
			}
		}
	}
	return out
}

// FileSet turns registered file descriptors into a FileDescriptorSet.
func FileSet(files []protoreflect.FileDescriptor) *descriptorpb.FileDescriptorSet {
	set := &descriptorpb.FileDescriptorSet{}
	for _, fd := range files {
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	return set
}

func index(set *descriptorpb.FileDescriptorSet) (map[string]*descriptorpb.DescriptorProto, map[string]*descriptorpb.EnumDescriptorProto, map[string]*descriptorpb.ServiceDescriptorProto) {
	msgs := map[string]*descriptorpb.DescriptorProto{}
	enums := map[string]*descriptorpb.EnumDescriptorProto{}
	svcs := map[string]*descriptorpb.ServiceDescriptorProto{}
	var walk func(prefix string, ms []*descriptorpb.DescriptorProto, es []*descriptorpb.EnumDescriptorProto)
	walk = func(prefix string, ms []*descriptorpb.DescriptorProto, es []*descriptorpb.EnumDescriptorProto) {
		for _, e := range es {
			enums[prefix+"."+e.GetName()] = e
		}
		for _, m := range ms {
			full := prefix + "." + m.GetName()
			msgs[full] = m
			walk(full, m.GetNestedType(), m.GetEnumType())
		}
	}
	for _, f := range set.GetFile() {
		walk(f.GetPackage(), f.GetMessageType(), f.GetEnumType())
		for _, s := range f.GetService() {
			svcs[f.GetPackage()+"."+s.GetName()] = s
		}
	}
	return msgs, enums, svcs
}

func reservedNumber(m *descriptorpb.DescriptorProto, n int32) bool {
	for _, r := range m.GetReservedRange() {
		if n >= r.GetStart() && n < r.GetEnd() {
			return true
		}
	}
	return false
}

func reservedName(m *descriptorpb.DescriptorProto, name string) bool {
	for _, r := range m.GetReservedName() {
		if r == name {
			return true
		}
	}
	return false
}

func enumReserved(e *descriptorpb.EnumDescriptorProto, n int32, name string) bool {
	num := false
	for _, r := range e.GetReservedRange() {
		if n >= r.GetStart() && n <= r.GetEnd() { // enum ranges are inclusive
			num = true
		}
	}
	for _, r := range e.GetReservedName() {
		if r == name && num {
			return true
		}
	}
	return false
}

func oneofName(m *descriptorpb.DescriptorProto, f *descriptorpb.FieldDescriptorProto) string {
	if f.OneofIndex == nil || f.GetProto3Optional() {
		return ""
	}
	return m.GetOneofDecl()[f.GetOneofIndex()].GetName()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
