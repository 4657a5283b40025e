//go:build !race

package gateway

const raceAllocSlack = 0
