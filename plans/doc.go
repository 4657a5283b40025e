// Package plans knows what an org's plan allows: the editions and what each allots per window
// (per user or per agent, with a base, a maximum and a legacy floor), add-on credits (their
// cap, and their price in graduated slabs, in integer micro-dollars), and monthly plans (calls
// per subscription period, plus at most twice as many additional calls).
//
// # Editions
//
// An Edition says how many credits an org gets per window: CRM editions grow per user up to a
// maximum, Desk editions grow per agent (light agents earn nothing), a legacy limit is kept if
// it is higher (grandfathering), and Concurrency is the default cap on in-flight calls.
// LookupEdition finds a built-in one by its configuration name, such as "crm-professional";
// ParseEditions and LoadEditionsFile read an editions file over the built-in ones, naming the
// line and the edition of every problem.
//
// # Add-on credits
//
// AddonCap is the most add-on credits an org may set on top of its free allotment. Slabs
// prices the add-on credits consumed in a day; ParseSlabs reads CREDITGATE_ADDON_SLABS.
//
// # An org's plan
//
// Plans holds the editions in force and how monthly plans are billed, and answers for any
// org, configured or given at run time: LimitOf (credits per window), ConcurrencyOf (calls in
// flight), AddonOf (what it may buy: add-on credits, or a monthly plan's additional calls,
// at most MaxAdditional) and Check (the org against its edition, every problem named).
//
// The stores count the allowance an admin stores at run time with the same formula as
// Addon.Allowance, which calls limiter.Allowance, the Go twin of the scripts' helper: plans
// imports limiter, never the other way, and hands it limits and caps as numbers.
//
// # Left to others
//
// The package keeps no state, talks to no network, reads no environment and does not log.
// Reading configuration and swapping plans on reload (package main), counting the window and
// the period (package limiter) and answering the admin API (package gateway) belong to the
// callers.
package plans
