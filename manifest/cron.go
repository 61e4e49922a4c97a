package manifest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file checks cron schedules without scheduling them. The trigger
// package schedules them with github.com/netresearch/go-cron, parsing with
// Second|Minute|Hour|Dom|Month|Dow|Descriptor; the grammar accepted here is a
// subset of what that parser accepts (cron_test.go cross-checks it), minus
// what is easy to get wrong: wrap-around ranges (22-2), '?' outside the day
// fields, empty list items, signs, uppercase names (Normalize lowercases
// them), time zones, and days of month that no selected month has.

type cronField struct {
	name     string
	min, max int
	names    map[string]int
	question bool // '?' allowed, meaning '*'
}

var cronFields = [6]cronField{
	{name: "second", min: 0, max: 59},
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day-of-month", min: 1, max: 31, question: true},
	{name: "month", min: 1, max: 12, names: map[string]int{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
	}},
	{name: "day-of-week", min: 0, max: 7, question: true, names: map[string]int{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6,
	}},
}

var cronDescriptors = map[string]bool{
	"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true,
	"@daily": true, "@midnight": true, "@hourly": true,
}

// normalizeSchedule trims s, collapses white space to single spaces and,
// unless s is a descriptor, lowercases it.
func normalizeSchedule(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if !strings.HasPrefix(s, "@") {
		s = strings.ToLower(s)
	}
	return s
}

// checkSchedule returns what is wrong with the cron schedule s, or "".
func checkSchedule(s string) string {
	if len(s) > maxScheduleLen {
		return fmt.Sprintf("longer than %d characters", maxScheduleLen)
	}
	if strings.HasPrefix(s, "@") {
		if cronDescriptors[s] {
			return ""
		}
		rest, ok := strings.CutPrefix(s, "@every ")
		if !ok {
			return fmt.Sprintf("unknown descriptor %q (want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)", s)
		}
		d, err := time.ParseDuration(rest)
		switch {
		case err != nil:
			return fmt.Sprintf("@every needs a duration like 30s or 1h30m, got %q", rest)
		case d < minEvery:
			return "@every needs a duration ≥ 1s"
		case d > maxEvery:
			return "@every needs a duration ≤ 8784h (366 days)"
		}
		return ""
	}
	fields := strings.Fields(s)
	if len(fields) != len(cronFields) {
		return fmt.Sprintf("want 6 fields (second minute hour day-of-month month day-of-week), got %d", len(fields))
	}
	var sets [6]uint64
	for i, f := range fields {
		set, err := cronFields[i].parse(f)
		if err != "" {
			return cronFields[i].name + ": " + err
		}
		sets[i] = set
	}
	if !daysExist(sets[3], sets[4]) {
		return "day-of-month never occurs in the selected months"
	}
	return ""
}

// parse returns the set of values a field selects, as bits, or what is
// wrong with it.
func (c cronField) parse(field string) (uint64, string) {
	var set uint64
	for item := range strings.SplitSeq(field, ",") {
		if item == "" {
			return 0, fmt.Sprintf("empty item in %q", field)
		}
		base, stepText, hasStep := strings.Cut(item, "/")
		var lo, hi int
		switch {
		case base == "?":
			if !c.question {
				return 0, "'?' is allowed only in day-of-month and day-of-week"
			}
			if hasStep {
				return 0, fmt.Sprintf("'?' takes no step in %q", item)
			}
			lo, hi = c.min, c.max
		case base == "*":
			lo, hi = c.min, c.max
		default:
			first, last, isRange := strings.Cut(base, "-")
			var err string
			if lo, err = c.value(first); err != "" {
				return 0, err
			}
			switch {
			case isRange:
				if hi, err = c.value(last); err != "" {
					return 0, err
				}
				if lo > hi {
					return 0, fmt.Sprintf("range %q runs backwards", base)
				}
			case hasStep:
				hi = c.max
			default:
				hi = lo
			}
		}
		step := 1
		if hasStep {
			n, ok := digits(stepText)
			switch {
			case !ok:
				return 0, fmt.Sprintf("step %q is not a number", stepText)
			case n < 1:
				return 0, fmt.Sprintf("step must be at least 1 in %q", item)
			case n > 1 && n > hi-lo:
				return 0, fmt.Sprintf("step %d is not smaller than the %d values of %d-%d in %q", n, hi-lo+1, lo, hi, item)
			}
			step = n
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << v
		}
	}
	return set, ""
}

// value parses a number or a lowercase name within the field's bounds.
func (c cronField) value(s string) (int, string) {
	n, ok := c.names[s]
	if !ok {
		if n, ok = digits(s); !ok {
			return 0, fmt.Sprintf("%q is not a number or a name", s)
		}
	}
	if n < c.min || n > c.max {
		return 0, fmt.Sprintf("%d is out of range %d-%d", n, c.min, c.max)
	}
	return n, ""
}

// digits parses 1 to 9 ASCII digits.
func digits(s string) (int, bool) {
	if len(s) == 0 || len(s) > 9 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// daysExist reports whether some selected day of month exists in some
// selected month (February counted with 29 days).
func daysExist(days, months uint64) bool {
	length := [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
	for m := 1; m <= 12; m++ {
		if months&(1<<m) != 0 && days&(1<<(length[m]+1)-1) != 0 {
			return true
		}
	}
	return false
}
