// Package configfile reads a configuration file, YAML or JSON, into Go structs, with errors
// that name the line. The orgs, cost table and editions files use it; so can any later file.
//
// Both syntaxes become the same yaml.Node tree (JSON through encoding/json, which accepts
// every JSON escape, YAML through go.yaml.in/yaml/v3), and one decoder turns that tree into
// structs: fields by their yaml tag, unknown and repeated fields reported, null only where a
// pointer or an Unmarshaler takes it. The same content therefore gives the same result or
// the same errors in either syntax. DecodeJSON is a faster path for large JSON files that
// accepts nothing Decode refuses; on any error the caller decodes again with Decode for
// errors with lines.
//
// Checks beyond types (a bad ID, a negative count) belong to the caller. A struct field of
// type Pos receives the line and column where its mapping began, for the caller's errors.
package configfile
