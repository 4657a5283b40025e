//go:build race

package gateway

// raceAllocSlack: under the race detector sync.Pool drops some of what is put back, so a
// pooled object is sometimes allocated anew.
const raceAllocSlack = 1
