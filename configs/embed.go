// Package configs holds the commented default configuration, embedded in the
// binary so that switchboard runs with no configuration file at all.
package configs

import _ "embed"

// Default is the text of configs/switchboard.yaml.
//
//go:embed switchboard.yaml
var Default []byte
