package store

import "context"

// SetMaxScan sets how many records one listing page may read and returns
// a func that restores it. Not safe to call while listings run.
func SetMaxScan(n int) (restore func()) {
	old := maxScan
	maxScan = n
	return func() { maxScan = old }
}

// SetBatchReadFrom sets the fewest keys a listing reads in batches, and
// returns what restores it.
func SetBatchReadFrom(n int) (restore func()) {
	was := batchReadFrom
	batchReadFrom = n
	return func() { batchReadFrom = was }
}

// AppendRunSync is the synchronous AppendRun (one publish and ack per
// record), kept so tests and benchmarks can compare it with group commit.
func (s *Store) AppendRunSync(ctx context.Context, r Run) error { return s.appendRunSync(ctx, r) }

// LeaderLastValue is the last value of bucket's key as the bucket's
// stream leader answers, past direct gets.
func (s *Store) LeaderLastValue(ctx context.Context, bucket, key string) ([]byte, error) {
	m, err := leaderLastMsg(ctx, s.js, "KV_"+bucket, "$KV."+bucket+"."+key)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}
