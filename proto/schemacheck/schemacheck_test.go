package schemacheck

import (
	"flag"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	watchpostv1 "github.com/watchpost/watchpost/proto/watchpost/v1"
)

const releasePath = "../watchpost/v1/release.binpb"

var writeRelease = flag.Bool("write-release", false, "overwrite the release snapshot with the current schema (only when cutting a release)")

func currentFiles() []protoreflect.FileDescriptor {
	return []protoreflect.FileDescriptor{
		watchpostv1.File_watchpost_v1_event_proto,
		watchpostv1.File_watchpost_v1_ingest_proto,
		watchpostv1.File_watchpost_v1_query_proto,
	}
}

func TestLint(t *testing.T) {
	if problems := Lint(currentFiles()); len(problems) > 0 {
		t.Fatalf("proto lint:\n%s", strings.Join(problems, "\n"))
	}
}

func TestNoBreakingChangeSinceRelease(t *testing.T) {
	current := FileSet(currentFiles())
	if *writeRelease {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(current)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(releasePath, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(releasePath)
	if err != nil {
		t.Fatalf("reading release snapshot: %v", err)
	}
	released := &descriptorpb.FileDescriptorSet{}
	if err := proto.Unmarshal(b, released); err != nil {
		t.Fatalf("decoding release snapshot: %v", err)
	}
	if problems := Breaking(released, current); len(problems) > 0 {
		t.Fatalf("breaking changes since the release snapshot:\n%s", strings.Join(problems, "\n"))
	}
}

// TestBreakingDetects proves the checker catches each kind of change.
func TestBreakingDetects(t *testing.T) {
	base := FileSet(currentFiles())
	mutate := func(f func(s *descriptorpb.FileDescriptorSet)) []string {
		s := proto.Clone(base).(*descriptorpb.FileDescriptorSet)
		f(s)
		return Breaking(base, s)
	}
	msg := func(s *descriptorpb.FileDescriptorSet, file, name string) *descriptorpb.DescriptorProto {
		for _, f := range s.File {
			if f.GetName() != file {
				continue
			}
			for _, m := range f.MessageType {
				if m.GetName() == name {
					return m
				}
			}
		}
		t.Fatalf("message %s not in %s", name, file)
		return nil
	}
	cases := []struct {
		name string
		f    func(s *descriptorpb.FileDescriptorSet)
		want string
	}{
		{"field removed", func(s *descriptorpb.FileDescriptorSet) {
			m := msg(s, "watchpost/v1/event.proto", "Process")
			m.Field = m.Field[1:]
		}, "field watchpost.v1.Process.pid (1) removed without reserving its number and name"},
		{"field renamed", func(s *descriptorpb.FileDescriptorSet) {
			msg(s, "watchpost/v1/event.proto", "Process").Field[0].Name = proto.String("process_id")
		}, "field watchpost.v1.Process.pid (1) renamed to process_id"},
		{"field retyped", func(s *descriptorpb.FileDescriptorSet) {
			msg(s, "watchpost/v1/event.proto", "Process").Field[0].Type = descriptorpb.FieldDescriptorProto_TYPE_UINT64.Enum()
		}, "field watchpost.v1.Process.pid (1) changed type from TYPE_UINT32 to TYPE_UINT64"},
		{"message removed", func(s *descriptorpb.FileDescriptorSet) {
			f := s.File[0]
			f.MessageType = f.MessageType[1:]
		}, "message watchpost.v1.Header removed"},
	}
	for _, c := range cases {
		got := mutate(c.f)
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("%s: got %q, want [%q]", c.name, got, c.want)
		}
	}
	// A removed field whose number and name are reserved is accepted.
	got := mutate(func(s *descriptorpb.FileDescriptorSet) {
		m := msg(s, "watchpost/v1/event.proto", "Process")
		m.Field = m.Field[1:]
		m.ReservedRange = append(m.ReservedRange, &descriptorpb.DescriptorProto_ReservedRange{Start: proto.Int32(1), End: proto.Int32(2)})
		m.ReservedName = append(m.ReservedName, "pid")
	})
	if len(got) != 0 {
		t.Errorf("reserved removal: got %q, want none", got)
	}
}

func TestLintDetects(t *testing.T) {
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("bad.proto"),
		Package: proto.String("bad"),
		Syntax:  proto.String("proto3"),
		Options: &descriptorpb.FileOptions{GoPackage: proto.String("example.com/bad")},
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name:  proto.String("Color"),
			Value: []*descriptorpb.EnumValueDescriptorProto{{Name: proto.String("RED"), Number: proto.Int32(0)}},
		}},
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Thing"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name: proto.String("badField"), JsonName: proto.String("badField"), Number: proto.Int32(1),
				Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			}},
		}},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := Lint([]protoreflect.FileDescriptor{fd})
	want := []string{
		"bad.proto: package \"bad\" is not versioned (want name.vN)",
		"bad.proto: enum value RED: want UPPER_SNAKE_CASE prefixed COLOR_",
		"bad.proto: enum bad.Color: zero value is RED, want COLOR_UNSPECIFIED",
		"bad.proto: field bad.Thing.badField: want snake_case",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
