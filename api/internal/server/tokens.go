package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Token is what the API shows of a bearer token: never the token or its hash.
type Token struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Scope     string     `json:"scope"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// listTokens lists the tenant's tokens, newest first (scope admin). api_token is
// the owner's table (takt_app cannot read it): the tenant is filtered here.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	p := r.Context().Value(principalKey).(principal)
	rows, err := s.d.Primary.Query(r.Context(), `SELECT id, name, scope, created_at, created_by, expires_at, revoked_at
		FROM api_token WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC`, p.tenant)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Token])
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if out == nil {
		out = []Token{}
	}
	for i := range out {
		if err := s.openToken(p.tenant, &out[i]); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
}

// revokeToken revokes one of the tenant's tokens (scope admin), and audits it.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	p := r.Context().Value(principalKey).(principal)
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.fail(w, r, badParam("id", "%q is not a token id", r.PathValue("id")))
		return
	}
	var tok Token
	err = pgx.BeginTxFunc(r.Context(), s.d.Primary, pgx.TxOptions{}, func(tx pgx.Tx) error {
		// The tenant set for the audit log's row-level security (the API's role
		// writes it as itself here: takt_app cannot touch api_token).
		if _, err := tx.Exec(r.Context(), `SELECT set_config('app.tenant', $1, true)`, p.tenant); err != nil {
			return err
		}
		err := tx.QueryRow(r.Context(), `UPDATE api_token SET revoked_at = coalesce(revoked_at, now()) WHERE tenant_id = $1 AND id = $2
			RETURNING id, name, scope, created_at, created_by, expires_at, revoked_at`, p.tenant, id).
			Scan(&tok.ID, &tok.Name, &tok.Scope, &tok.CreatedAt, &tok.CreatedBy, &tok.ExpiresAt, &tok.RevokedAt)
		if err == pgx.ErrNoRows {
			return &apiError{http.StatusNotFound, "not_found", "no token " + strconv.FormatInt(id, 10) + " in this tenant"}
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(r.Context(), `INSERT INTO audit_log (tenant_id, actor, action, entity, entity_id, after)
			VALUES ($1, $2, 'update', 'api_token', $3, $4)`, p.tenant, s.actor(p), strconv.FormatInt(id, 10), tok)
		if err != nil {
			return err
		}
		return s.openToken(p.tenant, &tok) // the audit log keeps it sealed; the answer shows it
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.tokens.Clear() // this server forgets it at once; others within TokenCache
	writeJSON(w, http.StatusOK, tok)
}
