// kv-lincheck: checks a history of client operations on the store for
// linearizability, one key at a time, against a register model, with
// porcupine (github.com/anishathalye/porcupine).
//
// The history is JSON lines, one operation each, as tests/kv_history.c
// writes them:
//
//	{"client":3,"op":"set","key":"k1","value":"c3-17","call":12,"ret":40,"outcome":"ok"}
//	{"client":0,"op":"get","key":"k1","found":true,"value":"c3-17","call":50,"ret":61,"outcome":"ok"}
//	{"client":5,"op":"rm","key":"k1","found":false,"call":70,"ret":75,"outcome":"ok"}
//
// call and ret are monotonic nanoseconds; outcome is ok (the answer is
// known), fail (the operation certainly did not happen: refused) or unknown
// (it may or may not have happened: 504, timeout, lost connection).
//
// Usage: kv-lincheck [-timeout 5m] [-viz DIR] HISTORY
//
// Prints one verdict per key and an overall one; exits 0 when every key is
// linearizable, 1 when one is not (porcupine's HTML visualization of each
// failing key is written under -viz), 2 on an error or a check that ran out
// of time.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Exit codes.
const (
	exitLinearizable = 0
	exitViolation    = 1
	exitError        = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("kv-lincheck", flag.ContinueOnError)
	flags.SetOutput(stderr)
	timeout := flags.Duration("timeout", 5*time.Minute, "time limit per key (0: none)")
	vizDir := flags.String("viz", "", "directory for the HTML visualization of failing keys")
	if err := flags.Parse(args); err != nil {
		return exitError
	}
	if flags.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: kv-lincheck [-timeout D] [-viz DIR] HISTORY")
		return exitError
	}
	file, err := os.Open(flags.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "kv-lincheck:", err)
		return exitError
	}
	defer file.Close()
	records, err := readHistory(file)
	if err != nil {
		fmt.Fprintln(stderr, "kv-lincheck:", err)
		return exitError
	}
	report := checkHistory(records, *timeout)
	printReport(stdout, report)
	if report.Verdict == porcupine.Illegal && *vizDir != "" {
		if err := writeVisualizations(stdout, *vizDir, report); err != nil {
			fmt.Fprintln(stderr, "kv-lincheck:", err)
		}
	}
	switch report.Verdict {
	case porcupine.Ok:
		return exitLinearizable
	case porcupine.Illegal:
		return exitViolation
	default:
		return exitError
	}
}

// printReport writes one line per key, then the counts and the verdict.
func printReport(out io.Writer, report Report) {
	for _, key := range report.Keys {
		fmt.Fprintf(out, "key %-16s %-14s %6d ops checked (%d unknown, %d untraceable unknown writes left out)\n",
			key.Key, verdictWord(key.Verdict), key.Checked, key.Unknown, key.Dropped)
	}
	fmt.Fprintf(out, "operations: %d ok, %d failed, %d unknown\n", report.Ok, report.Failed, report.Unknown)
	fmt.Fprintf(out, "verdict: %s\n", verdictWord(report.Verdict))
}

func verdictWord(result porcupine.CheckResult) string {
	switch result {
	case porcupine.Ok:
		return "linearizable"
	case porcupine.Illegal:
		return "NOT-linearizable"
	default:
		return "undecided"
	}
}

// writeVisualizations checks each failing key again, verbosely (slower, so
// only then), and writes porcupine's HTML page for it.
func writeVisualizations(out io.Writer, dir string, report Report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, key := range report.Keys {
		if key.Verdict != porcupine.Illegal {
			continue
		}
		_, info := porcupine.CheckOperationsVerbose(registerModel, key.Operations, time.Minute)
		path := filepath.Join(dir, safeName(key.Key)+".html")
		if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
			return err
		}
		fmt.Fprintf(out, "visualization of key %s: %s\n", key.Key, path)
	}
	return nil
}

// safeName keeps letters, digits, '-' and '_' of a key, for a file name.
func safeName(key string) string {
	return strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, key)
}
