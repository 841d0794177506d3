package sqldb

import (
	"context"
	"database/sql"
	"log/slog"
	"time"
)

// Op is one write, run inside the batch's transaction.
type Op func(ctx context.Context, tx *sql.Tx) error

// BatchWriter runs queued writes in as few transactions as it can: whatever
// is queued when the previous transaction commits goes into the next one. It
// takes disk writes off the request path (and makes them cheap) while keeping
// their order.
type BatchWriter struct {
	db   *sql.DB
	name string
	log  *slog.Logger
	ops  chan Op
}

// NewBatchWriter returns a writer with room for queue pending ops; Enqueue
// blocks when it is full.
func NewBatchWriter(db *sql.DB, name string, queue int, log *slog.Logger) *BatchWriter {
	return &BatchWriter{db: db, name: name, log: log, ops: make(chan Op, queue)}
}

// Enqueue queues op.
func (w *BatchWriter) Enqueue(op Op) { w.ops <- op }

// maxBatch bounds one transaction.
const maxBatch = 2048

// A batch smaller than lingerBelow waits up to linger for more ops before it
// is written: under a steady trickle of writes (call records at a few
// hundred calls/s) each op was otherwise a transaction of its own, and the
// commits were most of the writer's work. Writes are behind the request
// path anyway; 5 ms more changes nothing there.
const (
	lingerBelow = 64
	linger      = 5 * time.Millisecond
)

// Run writes queued ops until ctx ends, then writes what is still queued and
// returns. The caller owns the goroutine that runs it; Enqueue must not be
// called after Run has returned.
func (w *BatchWriter) Run(ctx context.Context) {
	batch := make([]Op, 0, maxBatch)
	wait := time.NewTimer(linger)
	wait.Stop()
	defer wait.Stop()
	for {
		select {
		case op := <-w.ops:
			batch = w.fill(append(batch[:0], op))
			if len(batch) < lingerBelow {
				batch = w.linger(ctx, wait, batch)
			}
			w.write(batch)
		case <-ctx.Done():
			for {
				batch = w.fill(batch[:0])
				if len(batch) == 0 {
					return
				}
				w.write(batch)
			}
		}
	}
}

// linger appends ops to batch as they come, for up to linger, until it has
// lingerBelow of them or ctx ends.
func (w *BatchWriter) linger(ctx context.Context, wait *time.Timer, batch []Op) []Op {
	wait.Reset(linger)
	defer wait.Stop()
	for len(batch) < lingerBelow {
		select {
		case op := <-w.ops:
			batch = append(batch, op)
		case <-wait.C:
			return w.fill(batch)
		case <-ctx.Done():
			return w.fill(batch)
		}
	}
	return w.fill(batch)
}

// fill appends queued ops to batch without waiting.
func (w *BatchWriter) fill(batch []Op) []Op {
	for len(batch) < maxBatch {
		select {
		case op := <-w.ops:
			batch = append(batch, op)
		default:
			return batch
		}
	}
	return batch
}

// write runs batch in one transaction. If that fails, one bad op (a
// constraint, a full disk for a moment) must not take the others with it:
// each op is then retried in a transaction of its own, and only those that
// fail alone are lost (and logged, once for the batch).
func (w *BatchWriter) write(batch []Op) {
	if err := w.commit(batch); err == nil {
		return
	}
	failed := 0
	var last error
	for _, op := range batch {
		if err := w.commit([]Op{op}); err != nil {
			failed++
			last = err
		}
	}
	if failed > 0 {
		w.log.Error("database write failed", "store", w.name, "ops", len(batch), "failed", failed, "error", last)
	}
}

// commit runs ops in one transaction.
func (w *BatchWriter) commit(ops []Op) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// The statements get a context that cannot end: go-sqlite3 starts a
	// goroutine per statement to interrupt it when its context can end
	// (1 % of a registration's CPU, with its garbage). The timeout still
	// bounds the batch: database/sql rolls the transaction back when ctx
	// ends, and what is left of it fails.
	opCtx := context.WithoutCancel(ctx)
	for _, op := range ops {
		if err := op(opCtx, tx); err != nil {
			return err
		}
	}
	return tx.Commit()
}
