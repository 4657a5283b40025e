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
// The package does not know what a call costs (package costtable) or who is calling (package
// orgs); it never reads the environment and never logs.
package limiter
