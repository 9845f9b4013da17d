// dashcheck: checks each Grafana dashboard given as an argument against the Grafana
// Foundation SDK's dashboard types (github.com/grafana/grafana-foundation-sdk/go, Apache-2.0):
// a strict decode (an unknown or mistyped field anywhere, in panels, their options and field
// config, and their Prometheus queries, is an error naming its path), then the SDK's own
// Validate. Grafana itself (AGPL) is not used. scripts/dashcheck.sh builds and runs it;
// tests/tests/dashboards.rs runs every query against the real Prometheus.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// orNil: the SDK (v0.0.22) returns an empty cog.BuildErrors as a non-nil error when there is
// nothing to report. Its decoders then stop filling a panel or a query in (so the decoded
// value is not complete), but every error found is still reported with its path, which is
// what this check uses; tests/tests/dashboards_sdk.rs shows that errors in panels, their
// options and their queries are found.
func orNil(err error) error {
	var errs cog.BuildErrors
	if errors.As(err, &errs) && len(errs) == 0 {
		return nil
	}
	return err
}

func check(path string) (panels int, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var d dashboard.Dashboard
	if err := orNil(d.UnmarshalJSONStrict(raw)); err != nil {
		return 0, fmt.Errorf("strict decode: %w", err)
	}
	if err := orNil(d.Validate()); err != nil {
		return 0, fmt.Errorf("validate: %w", err)
	}
	var shape struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &shape); err != nil {
		return 0, err
	}
	return len(shape.Panels), nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dashcheck DASHBOARD.json...")
		os.Exit(2)
	}
	// Every panel type and datasource query the SDK knows (timeseries, stat, table, text,
	// prometheus, ...), so their options and queries are decoded strictly too.
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		n, err := check(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
			continue
		}
		fmt.Printf("%s: ok (%d panels)\n", path, n)
	}
	if failed {
		os.Exit(1)
	}
}
