package migrations

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
)

// AuditBreak is where the audit log's hash chain is broken, and how.
type AuditBreak struct {
	ChainSeq, ID int64
	Fault        string
}

func (b *AuditBreak) Error() string {
	return fmt.Sprintf("audit log broken at entry %d (id %d): %s", b.ChainSeq, b.ID, b.Fault)
}

// VerifyAudit walks the audit log's hash chain (migration 00017) and returns the
// number of entries and the head hash, or an *AuditBreak naming the first entry
// that was changed, removed before it, or put in afterwards. An operator records the
// head hash elsewhere: entries cut off the end are noticed against it.
func VerifyAudit(ctx context.Context, db *sql.DB) (entries int64, head string, err error) {
	var b AuditBreak
	err = db.QueryRowContext(ctx, `
WITH c AS (
    SELECT id, chain_seq, prev_hash, hash, sha256(prev_hash || takt_audit_content(a)) AS want,
           lag(hash) OVER w AS prev, lag(chain_seq) OVER w AS prev_seq
    FROM audit_log a WINDOW w AS (ORDER BY chain_seq))
SELECT chain_seq, id, CASE
    WHEN hash <> want THEN 'changed after it was written'
    WHEN coalesce(prev_seq, 0) <> chain_seq - 1 THEN 'the entries before it are missing'
    WHEN coalesce(prev, '\x'::bytea) <> prev_hash THEN 'not chained to the entry before it'
    END
FROM c
WHERE hash <> want OR coalesce(prev_seq, 0) <> chain_seq - 1 OR coalesce(prev, '\x'::bytea) <> prev_hash
ORDER BY chain_seq LIMIT 1`).Scan(&b.ChainSeq, &b.ID, &b.Fault)
	switch {
	case err == nil:
		return 0, "", &b
	case !errors.Is(err, sql.ErrNoRows):
		return 0, "", err
	}
	var h []byte
	err = db.QueryRowContext(ctx, `SELECT count(*), (SELECT hash FROM audit_log ORDER BY chain_seq DESC LIMIT 1) FROM audit_log`).Scan(&entries, &h)
	return entries, hex.EncodeToString(h), err
}
