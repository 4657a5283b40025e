package main

import "github.com/creditgate/creditgate/orgs"

// additionalOf returns the add-on part of an org's limit, which the usage API reports as
// additional_credits: the allotment with the org's configured add-on minus the allotment
// without it (0 for an org with an explicit limit, or on an edition without add-ons).
//
// This reads the add-on from the org configuration. Add-on limits set at run time through the
// admin API replace this function (gateway.Config.AdditionalOf).
func additionalOf(o *orgs.Org) int64 {
	if o.HasLimit || o.Addon <= 0 {
		return 0
	}
	free := *o
	free.Addon = 0
	return max(limitOf(o)-limitOf(&free), 0)
}
