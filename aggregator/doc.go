// Package aggregator consumes state and counter events and computes OEE windows
// (hour, shift, day in the site's time zone) per equipment into oee_window. Not
// built yet: see the aggregator and api issue.
package aggregator
