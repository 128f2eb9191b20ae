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
	Dropped    int // unknown-outcome sets left out: nothing could show they happened
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
// "infinity". One whose value no read ever returns can be left out, which
// keeps the search small, unless a remove that found the key returned after
// its call: in a linearization holding the write, what follows it up to the
// next write are reads, which would return its value, so there are none;
// that next write is a set, which ignores it, or a remove, whose "found"
// may be the only trace of it (a remove answered 200 right after a write
// answered 504, a gateway timeout, on a key nothing else had set).
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
	traces := tracesOf(records)
	for _, r := range records {
		operation, keep := toOperation(r, traces)
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

// writeTraces is what can reveal that a write with an unknown outcome
// happened: a read of its value, or a remove that found the key.
type writeTraces struct {
	read        map[string]bool // values some read returned
	removedLast int64           // latest return of a remove that found the key
}

func tracesOf(records []Record) writeTraces {
	traces := writeTraces{read: map[string]bool{}, removedLast: math.MinInt64}
	for _, r := range records {
		if r.Outcome != "ok" || r.Found == nil || !*r.Found {
			continue
		}
		switch r.Op {
		case "get":
			traces.read[r.Value] = true
		case "rm":
			traces.removedLast = max(traces.removedLast, r.Return)
		}
	}
	return traces
}

// untraceable tells whether an unknown-outcome set left no trace a
// linearization could need (see checkHistory): no read returned its value
// and no remove that found the key returned after its call.
func (traces writeTraces) untraceable(r Record) bool {
	return !traces.read[r.Value] && traces.removedLast < r.Call
}

// toOperation turns a record into porcupine's form; keep is false for
// records that cannot constrain the history (see checkHistory).
func toOperation(r Record, traces writeTraces) (porcupine.Operation, bool) {
	switch {
	case r.Outcome == "fail":
		return porcupine.Operation{}, false
	case r.Outcome == "unknown" && r.Op == "get":
		return porcupine.Operation{}, false
	case r.Outcome == "unknown" && r.Op == "set" && traces.untraceable(r):
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
