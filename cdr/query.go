package cdr

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/internal/sqldb"
)

// Filter selects call records (Query). Zero fields select everything.
type Filter struct {
	// User matches records whose caller or callee is this user: the user
	// part of user@host, or the whole user@host when it has an "@".
	User string
	// Status is "answered", "failed", "active" (not ended yet), or a SIP
	// status code.
	Status string
	// Since and Until bound the start time: Since <= started < Until.
	Since, Until time.Time
	// Limit is the page size (default 50, at most MaxLimit).
	Limit int
	// Cursor is the Next of the previous page; "" is the first page.
	Cursor string
}

// MaxLimit is the largest page Query returns.
const MaxLimit = 1000

// ErrBadFilter wraps a Filter that cannot be applied.
var ErrBadFilter = errors.New("bad filter")

// Query returns a page of records matching f, newest first, and the cursor
// of the next page ("" when this is the last).
func Query(ctx context.Context, db *sql.DB, f Filter) (recs []Record, next string, err error) {
	var where []string
	var args []any
	if f.User != "" {
		pat := likeEscape(f.User)
		if !strings.Contains(f.User, "@") {
			pat += "@%"
		}
		where = append(where, `(caller LIKE ? ESCAPE '\' OR callee LIKE ? ESCAPE '\')`)
		args = append(args, pat, pat)
	}
	switch f.Status {
	case "":
	case "answered":
		where = append(where, `answered_ms IS NOT NULL`)
	case "failed":
		where = append(where, `answered_ms IS NULL AND ended_ms IS NOT NULL`)
	case "active":
		where = append(where, `ended_ms IS NULL`)
	default:
		code, err := strconv.Atoi(f.Status)
		if err != nil || code < 100 || code > 699 {
			return nil, "", fmt.Errorf("%w: status %q is not answered, failed, active or a SIP status code", ErrBadFilter, f.Status)
		}
		where = append(where, `status = ?`)
		args = append(args, code)
	}
	if !f.Since.IsZero() {
		where = append(where, `started_ms >= ?`)
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where = append(where, `started_ms < ?`)
		args = append(args, f.Until.UnixMilli())
	}
	if f.Cursor != "" {
		started, id, err := parseCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, `(started_ms < ? OR (started_ms = ? AND id < ?))`)
		args = append(args, started, started, id)
	}
	limit := f.Limit
	switch {
	case limit == 0:
		limit = 50
	case limit < 0 || limit > MaxLimit:
		return nil, "", fmt.Errorf("%w: limit %d is outside 1..%d", ErrBadFilter, limit, MaxLimit)
	}
	q := `SELECT ` + recordColumns + ` FROM calls`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY started_ms DESC, id DESC LIMIT ?`
	args = append(args, limit+1)
	recs, err = sqldb.Collect(ctx, db, "query calls", scanRecord, q, args...)
	if err != nil {
		return nil, "", err
	}
	if len(recs) > limit {
		recs = recs[:limit]
		last := recs[limit-1]
		next = base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d:%d", last.Started.UnixMilli(), last.ID)))
	}
	return recs, next, nil
}

func parseCursor(c string) (started, id int64, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		s, i, ok := strings.Cut(string(b), ":")
		if ok {
			started, err1 := strconv.ParseInt(s, 10, 64)
			id, err2 := strconv.ParseInt(i, 10, 64)
			if err1 == nil && err2 == nil {
				return started, id, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("%w: cursor %q is not one Query returned", ErrBadFilter, c)
}

// likeEscape escapes the LIKE wildcards of s (with \ as the escape).
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
