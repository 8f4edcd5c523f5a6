// Package rules checks the Prometheus alert rules of examples/prometheus
// with Prometheus's own rule file parser, and that every series they name
// is one nicmux or nicmux-ipam writes.
package rules

import (
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

const rulesFile = "../../examples/prometheus/nicmux.rules.yml"

func TestRulesParse(t *testing.T) {
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil || len(groups.Groups) == 0 || len(groups.Groups[0].Rules) < 5 {
		t.Fatalf("no rules read from %s", rulesFile)
	}
	known := families(t)
	for _, r := range groups.Groups[0].Rules {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", r.Alert, err)
			continue
		}
		for _, sel := range parser.ExtractSelectors(expr) {
			for _, m := range sel {
				if m.Name != model.MetricNameLabel {
					continue
				}
				name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m.Value, "_bucket"), "_sum"), "_count")
				if !known[name] {
					t.Errorf("%s: %s is no series nicmux writes", r.Alert, m.Value)
				}
			}
		}
	}
}

// families are the metric names the metrics package defines.
func families(t *testing.T) map[string]bool {
	b, err := os.ReadFile(filepath.Join("..", "..", "metrics", "families.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`Name: "(nicmux_[a-z_]+)"`).FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	if len(out) < 20 {
		t.Fatalf("read %d families from metrics/families.go", len(out))
	}
	return out
}
