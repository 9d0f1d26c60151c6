// Package api serves OEE and the facts behind it over HTTP under /api/v1, with the
// tenant decided by a bearer token and enforced by row-level security. Not built
// yet: see the aggregator and api issue.
package api
