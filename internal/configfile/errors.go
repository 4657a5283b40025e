package configfile

import (
	"errors"
	"fmt"
	"strings"
)

// RootError returns the error of Decode that stops all others: a syntax error (prefixed "not
// valid YAML or JSON" when the data looked like JSON), or notMapping when the root is not a
// mapping. It returns nil when the file can be checked item by item.
func RootError(err error, notMapping string) error {
	var se *SyntaxError
	if errors.As(err, &se) {
		if se.JSON {
			return fmt.Errorf("not valid YAML or JSON: %w", err)
		}
		return err
	}
	var errs Errors
	if errors.As(err, &errs) && len(errs[0].Path) == 0 && errs[0].Kind == WrongType {
		return errors.New(notMapping)
	}
	return nil
}

// LineErrors formats the errors of Decode: the line, then where names the item holding the
// value and how many steps of its path that covers, then the rest of the path.
func LineErrors(err error, where func(Path) (string, int)) []error {
	var errs Errors
	if !errors.As(err, &errs) {
		return nil
	}
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		w, n := where(e.Path)
		var parts []string
		if w != "" {
			parts = append(parts, w)
		}
		if rest := e.Path[n:].String(); rest != "" {
			parts = append(parts, rest)
		}
		parts = append(parts, e.Msg())
		out = append(out, fmt.Errorf("line %d: %s", e.Line, strings.Join(parts, ": ")))
	}
	return out
}
