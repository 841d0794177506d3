package trace

import (
	"fmt"
	"strings"
)

// Parties of a ladder: the columns.
const (
	Caller = 0
	Switch = 1
	Callee = 2
)

// Columns places each message of c between two of the ladder's columns:
// the caller (whoever sent the first request), the switch, and the callee
// (every other peer). It returns, per message, the columns it goes from and
// to, and the addresses seen for the caller and the callee.
func Columns(c Call) (from, to []int, caller, callee string) {
	for _, m := range c.Messages {
		if m.Direction == "in" && m.Status == 0 {
			caller = m.From
			break
		}
	}
	col := func(a string, self bool) int {
		switch {
		case self:
			return Switch
		case a == caller:
			return Caller
		default:
			if callee == "" {
				callee = a
			}
			return Callee
		}
	}
	for _, m := range c.Messages {
		in := m.Direction == "in"
		from = append(from, col(m.From, !in))
		to = append(to, col(m.To, in))
	}
	return from, to, caller, callee
}

// colWidth is the width of the space between two columns of the text
// ladder.
const colWidth = 30

// Ladder draws c as text: one line per message, with its time, an arrow
// between the caller, switch and callee columns, and its label.
func Ladder(c Call) string {
	var b strings.Builder
	from, to, caller, callee := Columns(c)
	fmt.Fprintf(&b, "Call-ID %s\n", c.CallID)
	fmt.Fprintf(&b, "%-12s %-*s%-*s%s\n", "", colWidth, "caller", colWidth, "switch", "callee")
	fmt.Fprintf(&b, "%-12s %-*s%-*s%s\n", "", colWidth, dashIfEmpty(caller), colWidth, "", dashIfEmpty(callee))
	for i, m := range c.Messages {
		lo, hi := min(from[i], to[i]), max(from[i], to[i])
		row := []byte(strings.Repeat(" ", 2*colWidth+1))
		for _, p := range []int{Caller, Switch, Callee} {
			row[p*colWidth] = '|'
		}
		label := m.Label()
		if len(label) > colWidth-6 {
			label = label[:colWidth-6]
		}
		if lo == hi {
			copy(row[lo*colWidth+1:], " "+label)
		} else {
			start, end := lo*colWidth+1, hi*colWidth-1
			for j := start; j <= end; j++ {
				row[j] = '-'
			}
			if from[i] < to[i] {
				row[end] = '>'
			} else {
				row[start] = '<'
			}
			mid := start + (end-start+1-len(label))/2
			copy(row[mid:], label)
		}
		fmt.Fprintf(&b, "%-12s %s\n", m.Time.Format("15:04:05.000"), strings.TrimRight(string(row), " "))
	}
	if c.Dropped > 0 {
		fmt.Fprintf(&b, "(%d more messages not kept)\n", c.Dropped)
	}
	return b.String()
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
