package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/creditgate/creditgate/limiter"
)

// limiter's stores have every feature of the contract.
var (
	_ Store = (*limiter.RedisStore)(nil)
	_ Store = (*limiter.PipelinedStore)(nil)
	_ Store = (*limiter.MemoryStore)(nil)
)

// lacksAll is every feature beyond the window: what a store of windowOnly lacks.
const lacksAll = StoreCompensate | StoreRenew | StoreHeartbeat | StoreUsage | StorePeriods | StoreBilling | StoreSettle | StoreNotices

// windowOnly completes a fake store that has only the window (Spend, Refund, Release): the
// gateway never calls the rest when Config.StoreLacks names it (lacksAll).
type windowOnly struct{}

var errLacked = errors.New("called a feature the store lacks")

func (windowOnly) Compensate(context.Context, limiter.Key, string, time.Time) error { return errLacked }
func (windowOnly) Renew(context.Context, limiter.Key, []string, time.Time) (int64, error) {
	return 0, errLacked
}
func (windowOnly) Heartbeat(context.Context, string, time.Duration) (int64, error) {
	return 0, errLacked
}
func (windowOnly) Usage(context.Context, limiter.Key, time.Time) (limiter.Usage, error) {
	return limiter.Usage{}, errLacked
}
func (windowOnly) SpendCall(context.Context, limiter.PeriodKey, time.Time, bool) (limiter.PeriodDecision, error) {
	return limiter.PeriodDecision{}, errLacked
}
func (windowOnly) RefundCall(context.Context, limiter.PeriodKey, limiter.PeriodDecision) error {
	return errLacked
}
func (windowOnly) SetAddon(context.Context, string, int64) error { return errLacked }
func (windowOnly) Settle(context.Context, limiter.Key, limiter.Decision, int64, time.Time) (limiter.Settlement, error) {
	return limiter.Settlement{}, errLacked
}
func (windowOnly) Metered(context.Context, string, int64, int64) (map[int64]int64, error) {
	return nil, errLacked
}
func (windowOnly) SetNotices(context.Context, string, *limiter.NoticeSettings) error {
	return errLacked
}
func (windowOnly) Notices(context.Context, string) (limiter.NoticeState, error) {
	return limiter.NoticeState{}, errLacked
}
func (windowOnly) QueueNotices(context.Context, string, time.Time) error { return errLacked }
func (windowOnly) SweepNotices(context.Context, time.Time) error         { return errLacked }
func (windowOnly) ClaimNotices(context.Context, string, time.Time, time.Duration, int, int) ([]limiter.Notice, error) {
	return nil, errLacked
}
func (windowOnly) FinishNotices(context.Context, string, string, []limiter.Notice, *limiter.Notice, time.Time, time.Time) error {
	return errLacked
}
