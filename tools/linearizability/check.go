package main

import (
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// KeyReport is the verdict on one key's sub-history.
type KeyReport struct {
	Key        string
	Verdict    porcupine.CheckResult
	Checked    int // operations given to porcupine
	Unknown    int // of which with an unknown outcome
	Dropped    int // unknown-outcome sets left out: their value is never read
	Operations []porcupine.Operation
}

// Report is the verdict on a whole history, with the outcome counts.
type Report struct {
	Keys                []KeyReport
	Ok, Failed, Unknown int
	Verdict             porcupine.CheckResult
}

// checkHistory splits the history by key (a register per key: the history
// is linearizable if and only if every key's is) and checks each key.
//
// Failed operations certainly did not happen: they are left out. A read
// with an unknown outcome tells nothing: left out. A write with an unknown
// outcome may have happened at any time after its call, so it returns at
// "infinity"; one whose value no read ever returns can be left out (a
// linearization holding it stays one without it, since nothing read its
// value), which keeps the search small.
func checkHistory(records []Record, timeout time.Duration) Report {
	report := Report{Verdict: porcupine.Ok}
	byKey := map[string][]Record{}
	for _, record := range records {
		switch record.Outcome {
		case "ok":
			report.Ok++
		case "fail":
			report.Failed++
		default:
			report.Unknown++
		}
		byKey[record.Key] = append(byKey[record.Key], record)
	}
	keys := make([]string, 0, len(byKey))
	for key := range byKey {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		keyReport := checkKey(key, byKey[key], timeout)
		report.Keys = append(report.Keys, keyReport)
		report.Verdict = worse(report.Verdict, keyReport.Verdict)
	}
	return report
}

// worse: Illegal beats Unknown beats Ok.
func worse(a, b porcupine.CheckResult) porcupine.CheckResult {
	if a == porcupine.Illegal || b == porcupine.Illegal {
		return porcupine.Illegal
	}
	if a == porcupine.Unknown || b == porcupine.Unknown {
		return porcupine.Unknown
	}
	return porcupine.Ok
}

func checkKey(key string, records []Record, timeout time.Duration) KeyReport {
	report := KeyReport{Key: key}
	read := map[string]bool{}
	for _, r := range records {
		if r.Op == "get" && r.Outcome == "ok" && *r.Found {
			read[r.Value] = true
		}
	}
	for _, r := range records {
		operation, keep := toOperation(r, read)
		if !keep {
			if r.Op == "set" && r.Outcome == "unknown" {
				report.Dropped++
			}
			continue
		}
		if r.Outcome == "unknown" {
			report.Unknown++
		}
		report.Operations = append(report.Operations, operation)
	}
	report.Checked = len(report.Operations)
	report.Verdict = porcupine.CheckOperationsTimeout(registerModel, report.Operations, timeout)
	return report
}

// toOperation turns a record into porcupine's form; keep is false for
// records that cannot constrain the history (see checkHistory).
func toOperation(r Record, read map[string]bool) (porcupine.Operation, bool) {
	switch {
	case r.Outcome == "fail":
		return porcupine.Operation{}, false
	case r.Outcome == "unknown" && r.Op == "get":
		return porcupine.Operation{}, false
	case r.Outcome == "unknown" && r.Op == "set" && !read[r.Value]:
		return porcupine.Operation{}, false
	}
	out := output{unknown: r.Outcome == "unknown"}
	ret := r.Return
	if out.unknown {
		ret = math.MaxInt64
	} else if r.Found != nil {
		out.found = *r.Found
		out.value = r.Value
	}
	in := input{op: r.Op}
	if r.Op == "set" {
		in.value = r.Value
	}
	return porcupine.Operation{
		ClientId: r.Client,
		Input:    in,
		Call:     r.Call,
		Output:   out,
		Return:   ret,
	}, true
}
