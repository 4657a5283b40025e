package limiter

// SpendScriptHash returns the SHA1 under which RedisStore runs its spend script (EVALSHA), for
// tools that drive the script directly, such as redis-benchmark in the bench command.
func SpendScriptHash() string { return spendScript.Hash() }
