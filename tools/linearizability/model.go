package main

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// The state of one key: absent, or present with a value. Comparable, so
// porcupine's default == serves as equality.
type register struct {
	present bool
	value   string
}

// What a client asked: op is get, set or rm; value is what a set writes.
type input struct {
	op    string
	value string
}

// What it got back. unknown: the outcome is not known (the operation may
// or may not have taken effect, any result is allowed); found: the key was
// there (get, rm); value: what a get read.
type output struct {
	unknown bool
	found   bool
	value   string
}

// registerModel is the sequential specification of one key: a get returns
// the last value written, or absent; rm makes the key absent and tells
// whether it was there (200) or not (404); set always succeeds.
var registerModel = porcupine.Model{
	Init: func() interface{} { return register{} },
	Step: func(state, in, out interface{}) (bool, interface{}) {
		s, i, o := state.(register), in.(input), out.(output)
		switch i.op {
		case "set":
			return true, register{present: true, value: i.value}
		case "rm":
			return o.unknown || o.found == s.present, register{}
		default: // get
			if o.found {
				return s.present && s.value == o.value, s
			}
			return !s.present, s
		}
	},
	DescribeOperation: func(in, out interface{}) string {
		i, o := in.(input), out.(output)
		switch {
		case i.op == "set" && o.unknown:
			return fmt.Sprintf("set(%q) -> ?", i.value)
		case i.op == "set":
			return fmt.Sprintf("set(%q)", i.value)
		case o.unknown:
			return i.op + "() -> ?"
		case o.found && i.op == "get":
			return fmt.Sprintf("get() -> %q", o.value)
		case o.found:
			return "rm() -> removed"
		default:
			return i.op + "() -> missing"
		}
	},
	DescribeState: func(state interface{}) string {
		s := state.(register)
		if !s.present {
			return "(absent)"
		}
		return fmt.Sprintf("%q", s.value)
	},
}
