// Package limiter decides whether an org may spend n credits in its rolling window.
//
// The model: a credit consumed at time t is consumed until t+Window and free again at most one
// Bucket later. Consumption is recorded per bucket, so a window holds at most Window/Bucket+1
// records whatever the request rate, and the exact wait until a rejected cost fits is read off
// the buckets. A rejected call writes nothing, so a client that keeps retrying still recovers.
//
// Two stores implement Store with the same semantics, checked by one conformance suite
// (package storetest): RedisStore, shared by every replica (one Lua script per decision, run by
// SHA, keys hash-tagged by org for Redis Cluster), and MemoryStore for a single replica.
//
// Billing rides on the same decisions. A Key built WithAddons has a free allotment and an
// add-on limit that the store holds (Meter.SetAddon, read inside the debit script so every
// replica applies a change at once); the part of each debit above the free allotment is
// metered per UTC day in the same atomic step, and Refund un-meters it (Meter.Metered reads the
// days). Monthly plans count calls per subscription period instead (PeriodStore, its own
// script), their additional calls metered the same way. Both stores implement Meter and
// PeriodStore.
//
// The Redis contract reads by name on both sides. RedisKeys names an org's keys and lists each
// script's KEYS; each script's header lists its ARGV in the groups Go builds them in (the
// call, the org's key, the store) and its reply, which one decoder per script reads into a
// struct. The scripts share one source of helpers, lua/lib.lua, prepended to each at init.
// Numbers Go knows (window, slots, retention, caps) are arguments; a formula over what only
// Redis holds (a stored add-on limit, the window's total) lives in one lib.lua helper whose Go
// twin is tested against it.
//
// The package does not know what a call costs (package costtable), who is calling (package
// orgs) or what a plan allows (package plans): callers hand it limits and caps as numbers. It
// never reads the environment and never logs.
package limiter
