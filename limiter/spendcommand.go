package limiter

import (
	"fmt"
	"time"
)

// SpendCommand returns the command RedisStore sends for one Spend of cost from key at the
// server's clock, as EVALSHA and its arguments, but without a call id, so without the debit's
// record: for tools that drive the script directly, such as redis-benchmark in the bench
// command (one call id for all would make every call after the first do nothing).
func (s *RedisStore) SpendCommand(key Key, cost int64) []string {
	keys := key.redis()
	cmd := append([]string{"EVALSHA", spendScript.Hash(), fmt.Sprint(len(keys.spend))}, keys.spend...)
	for _, a := range s.spendCommand(keys, key, cost, time.Time{}, "")[3+len(keys.spend):] {
		cmd = append(cmd, fmt.Sprint(a))
	}
	return cmd
}
