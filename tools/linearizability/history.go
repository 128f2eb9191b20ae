package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// Record is one line of a history file: one client operation.
type Record struct {
	Client  int    `json:"client"`
	Op      string `json:"op"`      // get, set or rm
	Key     string `json:"key"`     // the key
	Value   string `json:"value"`   // set: written; get: read (when found)
	Found   *bool  `json:"found"`   // get, rm: whether the key was there
	Call    int64  `json:"call"`    // invocation, monotonic ns
	Return  int64  `json:"ret"`     // response, monotonic ns
	Outcome string `json:"outcome"` // ok, fail or unknown
}

// readHistory parses JSON lines; blank lines are skipped, anything
// malformed is an error naming its line.
func readHistory(in io.Reader) ([]Record, error) {
	var records []Record
	scanner := bufio.NewScanner(in)
	scanner.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for line := 1; scanner.Scan(); line++ {
		text := scanner.Bytes()
		if len(text) == 0 {
			continue
		}
		var record Record
		if err := json.Unmarshal(text, &record); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if err := record.validate(); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		records = append(records, record)
	}
	return records, scanner.Err()
}

func (r *Record) validate() error {
	switch r.Op {
	case "get", "set", "rm":
	default:
		return fmt.Errorf("unknown op %q", r.Op)
	}
	switch r.Outcome {
	case "ok", "fail", "unknown":
	default:
		return fmt.Errorf("unknown outcome %q", r.Outcome)
	}
	if r.Outcome == "ok" && r.Op != "set" && r.Found == nil {
		return fmt.Errorf("%s with outcome ok has no \"found\"", r.Op)
	}
	if r.Outcome == "ok" && r.Return < r.Call {
		return fmt.Errorf("returns (%d) before it is called (%d)", r.Return, r.Call)
	}
	return nil
}
