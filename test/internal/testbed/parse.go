package testbed

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// ParseLogfmt splits one log/slog text-handler line (key=value key="quoted
// value" ...) into its keys and values. Malformed parts are skipped.
func ParseLogfmt(line string) map[string]string {
	kv := map[string]string{}
	i := 0
	for i < len(line) {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		start := i
		for i < len(line) && line[i] != '=' && line[i] != ' ' {
			i++
		}
		if i >= len(line) || line[i] != '=' {
			continue
		}
		key := line[start:i]
		i++ // '='
		if i < len(line) && line[i] == '"' {
			j := i + 1
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(line) {
				j = len(line) - 1
			}
			v, err := strconv.Unquote(line[i : j+1])
			if err != nil {
				v = strings.Trim(line[i:j+1], `"`)
			}
			kv[key] = v
			i = j + 1
			continue
		}
		vs := i
		for i < len(line) && line[i] != ' ' {
			i++
		}
		kv[key] = line[vs:i]
	}
	return kv
}

// ParseTable parses a text table: a header line, then one row per line.
// Columns are tab-separated, or aligned with spaces under single-word
// headers (text/tabwriter's output). Keys are the lower-cased headers with
// '_' and ' ' turned into '-'. Lines of only dashes or '=' are ignored.
func ParseTable(out string) ([]map[string]string, error) {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimRight(l, "\r ")
		if strings.TrimSpace(l) == "" || strings.Trim(l, "-=+| ") == "" {
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		return nil, errors.New("empty table")
	}
	header := lines[0]
	var rows []map[string]string
	if strings.Contains(header, "\t") {
		names := splitTabs(header)
		for i := range names {
			names[i] = normKey(names[i])
		}
		for _, l := range lines[1:] {
			cells := splitTabs(l)
			row := map[string]string{}
			for i, n := range names {
				if i < len(cells) {
					row[n] = cells[i]
				}
			}
			rows = append(rows, row)
		}
		return rows, nil
	}

	// Aligned columns: a cell starts where its header word starts.
	var names []string
	var starts []int
	for i, r := range header {
		if !unicode.IsSpace(r) && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	for k, s := range starts {
		end := len(header)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		names = append(names, normKey(header[s:end]))
	}
	for _, l := range lines[1:] {
		row := map[string]string{}
		if aligned(l, starts) {
			for k, s := range starts {
				end := len(l)
				if k+1 < len(starts) && starts[k+1] < len(l) {
					end = starts[k+1]
				}
				if s < len(l) {
					row[names[k]] = strings.TrimSpace(l[s:end])
				} else {
					row[names[k]] = ""
				}
			}
		} else {
			f := strings.Fields(l)
			if len(f) != len(names) {
				return nil, fmt.Errorf("row %q does not line up with header %q", l, header)
			}
			for k := range names {
				row[names[k]] = f[k]
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func splitTabs(l string) []string {
	out := strings.Split(l, "\t")
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}

// aligned reports whether every column start in l follows a space, i.e. the
// row's cells sit under the header words.
func aligned(l string, starts []int) bool {
	for _, s := range starts[1:] {
		if s >= len(l) {
			continue
		}
		if l[s-1] != ' ' {
			return false
		}
	}
	return true
}

func normKey(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.NewReplacer("_", "-", " ", "-").Replace(s)
}
