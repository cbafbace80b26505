//go:build !race

package correlation_test

const raceEnabled = false
