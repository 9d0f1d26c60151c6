package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"takt.dev/api/internal/server"
	"takt.dev/servicekit/pii"
)

const piiUsage = `usage: takt-api pii keygen [-id k1] [-index]
       takt-api pii status
       takt-api pii rotate [-batch 500]`

// keygenCmd prints a new key entry for TAKT_PII_KEYS: with -index, an index key too
// (the first time only: the index key is never rotated).
func keygenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("takt-api pii keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "k1", "the new data key's id (list it first in TAKT_PII_KEYS to make it current)")
	index := fs.Bool("index", false, "also make the index key (once, when setting up)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var out []string
	if *index {
		e, _ := pii.Keygen(pii.IndexID)
		out = append(out, e)
	}
	e, err := pii.Keygen(*id)
	if err != nil {
		return err
	}
	out = append(out, e)
	for _, e := range out {
		fmt.Fprintln(stdout, e)
	}
	return nil
}

// sealedColumn is a column of personal data that rotation re-seals.
type sealedColumn struct {
	table, column string
	hash          string // its lookup-hash column, or ""
	place         string // pii.Place's column name
}

var rotated = []sealedColumn{
	{"maintenance_event", "technician", "technician_hash", server.TechnicianColumn},
	{"api_token", "created_by", "", server.CreatedByColumn},
}

// piiCmd shows which keys seal the personal data, or re-seals it under the current
// key, as the tables' owner (it spans tenants).
func piiCmd(ctx context.Context, cfg *Config, keys *pii.Keyring, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "status" && args[0] != "rotate") {
		return errors.New(piiUsage)
	}
	fs := flag.NewFlagSet("takt-api pii "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	batch := fs.Int("batch", 500, "rotate: rows re-sealed per transaction")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *batch < 1 || *batch > 100000 {
		return fmt.Errorf("pii rotate: -batch %d: want 1 to 100000", *batch)
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// Row-level security would hide every other tenant's rows from a service role:
	// the rotation would re-seal some and say it was done.
	var hidden bool
	if err := pool.QueryRow(ctx, `SELECT row_security_active('maintenance_event')`).Scan(&hidden); err != nil {
		return err
	}
	if hidden {
		return fmt.Errorf("pii %s: run it as the tables' owner: row-level security hides other tenants' rows from this role", args[0])
	}
	if args[0] == "rotate" {
		for _, c := range rotated {
			n, err := reseal(ctx, pool, keys, c, *batch, stderr)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s.%s: %d re-sealed under key %q\n", c.table, c.column, n, keys.Current())
		}
	}
	return piiStatus(ctx, pool, keys, stdout)
}

// reseal re-seals, in batches of one transaction each, every value of c not sealed
// under the current key (values in clear included), and sets its lookup hash.
func reseal(ctx context.Context, pool *pgxpool.Pool, keys *pii.Keyring, c sealedColumn, batch int, progress io.Writer) (int, error) {
	current := pii.Prefix + keys.Current() + ":%"
	set := c.column + " = $2"
	if c.hash != "" {
		set += ", " + c.hash + " = $3"
	}
	var after int64
	total := 0
	for {
		type row struct {
			id            int64
			tenant, value string
		}
		var rows []row
		err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			rs, err := tx.Query(ctx, fmt.Sprintf(`SELECT id, tenant_id, %s FROM %s WHERE id > $1 AND %[1]s IS NOT NULL
				AND %[1]s NOT LIKE $2 ORDER BY id LIMIT $3 FOR UPDATE`, c.column, c.table), after, current, batch)
			if err != nil {
				return err
			}
			rows, err = pgx.CollectRows(rs, func(r pgx.CollectableRow) (row, error) {
				var x row
				return x, r.Scan(&x.id, &x.tenant, &x.value)
			})
			if err != nil {
				return err
			}
			for _, r := range rows {
				place := pii.Place(c.place, r.tenant)
				clear, err := keys.Open(place, r.value)
				if err != nil {
					return fmt.Errorf("%s.%s of row %d: %w", c.table, c.column, r.id, err)
				}
				args := []any{r.id, keys.Seal(place, clear)}
				if c.hash != "" {
					args = append(args, keys.Hash(clear))
				}
				if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET %s WHERE id = $1`, c.table, set), args...); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("pii rotate: %w (the batches before are committed; run it again to go on)", err)
		}
		if len(rows) == 0 {
			return total, nil
		}
		total += len(rows)
		after = rows[len(rows)-1].id
		fmt.Fprintf(progress, "%s.%s: %d re-sealed so far\n", c.table, c.column, total)
	}
}

// piiStatus counts the values of each personal column by the key that sealed them.
func piiStatus(ctx context.Context, pool *pgxpool.Pool, keys *pii.Keyring, stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COLUMN\tKEY\tROWS")
	for _, c := range append(rotated, sealedColumn{table: "audit_log", column: "actor"}) {
		rows, err := pool.Query(ctx, fmt.Sprintf(`SELECT coalesce(substring(%s from '^pii:v1:([^:]+):'), '(clear)'), count(*)
			FROM %s WHERE %[1]s IS NOT NULL GROUP BY 1 ORDER BY 1`, c.column, c.table))
		if err != nil {
			return err
		}
		for rows.Next() {
			var key string
			var n int64
			if err := rows.Scan(&key, &n); err != nil {
				rows.Close()
				return err
			}
			note := ""
			switch {
			case key == keys.Current():
				note = " (current)"
			case c.table == "audit_log" && key != "(clear)":
				note = " (append-only: keep this key listed while these rows are kept)"
			}
			fmt.Fprintf(tw, "%s.%s\t%s%s\t%d\n", c.table, c.column, key, note, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return tw.Flush()
}
