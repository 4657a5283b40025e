// Package orgs knows who is calling: the org configuration, its parser, and the lookup from a
// presented API key (or an org ID) to the org.
//
// Parse reads the CREDITGATE_ORGS syntax and ParseFile (or LoadFile) the YAML or JSON of
// CREDITGATE_ORGS_FILE, both with the same checks; NewDirectory checks the orgs and builds an
// immutable Directory whose ByKey hashes the presented key and finds its org with one map
// lookup and no allocation. Keys are held only as SHA-256 digests (Key), and no error,
// String method or log-facing value of this package contains a key.
//
// The package does not read the environment, talk to Redis or HTTP, or log; it does not know
// what an edition allots (package plans) or how a key is taken from a request (package
// gateway). Callers pass the configuration as a string and decide which fields an org needs.
//
// # CREDITGATE_ORGS syntax
//
// Orgs are separated by ';', each written as an ID, optionally followed by ':' and fields
// separated by ',':
//
//	acme:edition=crm-professional,users=20,keys=k1|k2;beta:limit=5000,keys=k3
//
// Whitespace around entries, IDs, field names and values is trimmed, and empty entries and
// fields (a trailing ';' or ',') are ignored. An org with no fields ("acme" or "acme:") is
// allowed. An ID is 1 to 64 of [A-Za-z0-9._-] and may not appear twice.
//
// A field splits on its first '=', so a value may contain '=' (base64 keys, for instance);
// a value cannot contain ',' or ';'. Each field may be given once. The fields:
//
//	edition        edition name, lower-case letters, digits and '-' (e.g. crm-professional)
//	users          CRM users
//	agents         Desk agents
//	light_agents   Desk light agents
//	limit          explicit credits per window, at least 1; overrides the edition formula
//	addon          add-on credits per window
//	legacy         grandfathered limit
//	concurrency    cap on in-flight requests (overrides the edition default)
//	monthly_limit  calls per subscription period (monthly plans)
//	additional     additional calls per period (monthly plans)
//	commercial     true or false (strconv.ParseBool), default true
//	keys           API keys separated by '|'
//
// Integers are base 10 with no sign, from 0 to 9223372036854775807. A key is either the plain
// key or "sha256:" followed by the 64 hex digits (either case) of the SHA-256 of the plain key,
// so plain keys need not sit in configuration:
//
//	printf %s "$KEY" | sha256sum | cut -d' ' -f1
//
// A key containing ',', ';' or '|', or beginning with "sha256:", can only be given in the
// sha256: form. Plain keys are used as written after trimming, so a key cannot begin or end
// with white space either.
//
// Parse reports every problem at once. Each error names the org, or the entry's position when
// its ID is missing or invalid, and the field, and quotes the bad value, except for keys:
//
//	org "acme": field "users": must be a non-negative integer, got "-3"
//	org "acme": unknown field "user" (known fields: edition, users, …)
//	entry 3: missing org id before ":"
//
// Text that may be a piece of a key split at a stray ',' or ';' (a malformed field or ID
// following a keys field) is not quoted either.
//
// # CREDITGATE_ORGS_FILE format
//
// A file holds one YAML or JSON document: a mapping whose one field, orgs, lists the orgs.
// Each org is a mapping with the field id (required) and the fields of CREDITGATE_ORGS:
//
//	orgs:
//	  - id: acme
//	    edition: crm-professional
//	    users: 20
//	    keys: [k1, "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//	  - id: beta
//	    limit: 5000
//	    keys: k3|k4          # one string separated by '|' also works
//
//	{"orgs": [{"id": "acme", "edition": "crm-professional", "users": 20, "keys": ["k1", "k2"]}]}
//
// Values are checked as in CREDITGATE_ORGS, by the same code, and give the same Org. Beyond
// that, types must match: id and edition are strings (quote a numeric ID: id: "42"); the
// integer fields are numbers, and commercial a boolean, not quoted strings; keys is a list of
// strings or one string of keys separated by '|'. A key in a list is one key: it may contain
// ',' or ';', but not '|' (almost always two keys written as one; give such a key as
// sha256:<hex>). An empty list of keys gives an org with no keys, as leaving keys out does.
// Unknown fields and a field given twice in an org are errors, as are a missing orgs field,
// null for any field and a second YAML document.
//
// Data whose first non-blank byte is '{' is read as JSON with encoding/json (go-yaml does not
// accept every JSON string escape, and locates syntax errors only roughly); anything else,
// and a '{' document that is YAML rather than JSON, is read as YAML.
//
// Each error names the line and the org, or orgs[i] (counting from 0) when its ID is missing
// or invalid, and the field; it quotes the bad value, except for keys:
//
//	orgs.yaml: line 7: org "acme": field "users": must be a non-negative integer, got "-3"
//	orgs.yaml: line 12: orgs[3]: missing field "id"
//	orgs.json: line 40: org "acme": defined twice (lines 2 and 40)
//
// All problems are found; the first 100 are reported, then how many more there are.
package orgs
