//go:build !race

package testbed

const raceDetector = false
