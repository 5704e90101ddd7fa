package detect

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/watchpost/watchpost/agent/event"
)

// FieldSpec is a rule field supplied by the package that produces an event
// kind the engine has no built-in fields for (the industrial operations of
// protocol inspection, learned baselines ...). Rules name it like any other
// field, with every modifier, in the log source of the kind's event type
// (`category: ics_op`) or of a Sigma category covering those kinds.
type FieldSpec struct {
	// Name is the field as rules write it (OperationClass, FunctionCode):
	// it must not collide with an existing field.
	Name string
	// Kinds are the events that carry the field; a rule naming it for any
	// other kind is refused at load, naming the file and line.
	Kinds []event.Kind
	// Doc says what the value holds, for the documentation.
	Doc string
	// Append appends ev's value, as text, to b and returns it. It is called
	// at most once per event and field, on the pipeline's goroutine, and
	// must not retain ev or allocate in the common case (append into b).
	Append func(ev *event.Event, b []byte) []byte
}

// engines counts engines made: fields can only be registered before the
// first one (evaluation contexts are sized by the number of fields).
var engines atomic.Int32

// ErrFieldsSealed is returned by RegisterField after an engine was made.
var ErrFieldsSealed = errors.New("fields are registered before the first engine is made (from an init function)")

// RegisterField adds a field for event kinds produced elsewhere. Call it
// from an init function: after New it fails with ErrFieldsSealed. It is
// not safe for concurrent use.
func RegisterField(f FieldSpec) error {
	switch {
	case engines.Load() > 0:
		return fmt.Errorf("registering field %s: %w", f.Name, ErrFieldsSealed)
	case f.Name == "" || !keyword.MatchString(f.Name):
		return fmt.Errorf("registering field %q: a name of letters, digits, '_', '-' or '.' is needed", f.Name)
	case len(f.Kinds) == 0 || f.Append == nil:
		return fmt.Errorf("registering field %s: kinds and Append are needed", f.Name)
	}
	if _, ok := fieldByName[f.Name]; ok {
		return fmt.Errorf("registering field %s: the field exists", f.Name)
	}
	var id fieldID
	d := fieldDef{name: f.Name, class: classKinds, doc: f.Doc}
	for _, k := range f.Kinds {
		d.kinds.set(k)
	}
	appendValue := f.Append
	d.get = buffered(&id, func(c *evalCtx, b []byte) []byte { return appendValue(c.ev, b) })
	def(&id, d)
	return nil
}
