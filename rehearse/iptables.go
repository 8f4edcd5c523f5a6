package rehearse

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// rule is a packet filter rule that names a container ID (the reference
// plugins put it in a comment: portmap's DNAT and SNAT jumps, bridge's and
// ptp's ipMasq rules).
type rule struct {
	tool, table, chain, spec string
}

func (r rule) String() string { return fmt.Sprintf("%s -t %s %s", r.tool, r.table, r.spec) }

// iptablesTools are the tools whose rules the leak check reads.
var iptablesTools = []string{"iptables", "ip6tables"}

// rulesNaming lists the iptables and ip6tables rules that name id.
func rulesNaming(ctx context.Context, id string) []rule {
	var out []rule
	for _, tool := range iptablesTools {
		if _, err := exec.LookPath(tool + "-save"); err != nil {
			continue
		}
		b, err := exec.CommandContext(ctx, tool+"-save").Output()
		if err != nil {
			continue
		}
		table := ""
		for _, line := range strings.Split(string(b), "\n") {
			if t, ok := strings.CutPrefix(line, "*"); ok {
				table = t
			}
			if strings.HasPrefix(line, "-A ") && strings.Contains(line, id) {
				chain, _, _ := strings.Cut(strings.TrimPrefix(line, "-A "), " ")
				out = append(out, rule{tool: tool, table: table, chain: chain, spec: line})
			}
		}
	}
	return out
}

var jumpRE = regexp.MustCompile(`(?:^| )-[jg] (CNI-\S+)`)

// remove deletes the rule (by its number in its chain: a rule's text in
// iptables -S is the text iptables-save prints), then the CNI-* chain it
// jumps to when no rule jumps there any more.
func (r rule) remove(ctx context.Context) error {
	n, err := r.number(ctx)
	if err != nil {
		return err
	}
	if err := r.run(ctx, "-D", r.chain, fmt.Sprint(n)); err != nil {
		return err
	}
	m := jumpRE.FindStringSubmatch(r.spec)
	if m == nil {
		return nil
	}
	all, err := r.output(ctx, "-S")
	if err != nil {
		return err
	}
	for _, j := range jumpRE.FindAllStringSubmatch(all, -1) {
		if j[1] == m[1] {
			return nil // still in use
		}
	}
	if err := r.run(ctx, "-F", m[1]); err != nil {
		return err
	}
	return r.run(ctx, "-X", m[1])
}

// number is the rule's position in its chain, from 1.
func (r rule) number(ctx context.Context) (int, error) {
	out, err := r.output(ctx, "-S", r.chain)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		n++
		if line == r.spec {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s: the rule is gone", r)
}

func (r rule) output(ctx context.Context, args ...string) (string, error) {
	b, err := exec.CommandContext(ctx, r.tool, append([]string{"-w", "-t", r.table}, args...)...).Output()
	if err != nil {
		return "", fmt.Errorf("%s -t %s %s: %w", r.tool, r.table, strings.Join(args, " "), err)
	}
	return string(b), nil
}

func (r rule) run(ctx context.Context, args ...string) error {
	_, err := r.output(ctx, args...)
	return err
}
