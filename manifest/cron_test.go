package manifest

import (
	"testing"

	cron "github.com/netresearch/go-cron"
)

// nodeParser is the parser the trigger package schedules with.
var nodeParser = cron.MustNewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func goCronParse(s string) error {
	_, err := nodeParser.Parse(s)
	return err
}

var scheduleTests = []struct {
	in   string
	want string // "" when valid
}{
	{"* * * * * *", ""},
	{"*/5 * * * * *", ""},
	{"0 */15 9-17 ? * mon-fri", ""},
	{"30 0 0 1,15 jan-jun/2 *", ""},
	{"0 0 12 * * thu", ""},
	{"0 0 0 29 feb ?", ""},
	{"0 0 0 * * 7", ""},
	{"5/10 * * * * *", ""},
	{"0-58/2 * * * * *", ""},
	{"0 0 0 31 jan,feb *", ""},
	{"@every 5s", ""},
	{"@every 1h30m", ""},
	{"@hourly", ""},
	{"@yearly", ""},
	{"@midnight", ""},
	{"*/5 * * * *", "want 6 fields (second minute hour day-of-month month day-of-week), got 5"},
	{"0 0 0 * * * 2030", "want 6 fields (second minute hour day-of-month month day-of-week), got 7"},
	{"", "want 6 fields (second minute hour day-of-month month day-of-week), got 0"},
	{"60 * * * * *", "second: 60 is out of range 0-59"},
	{"* 60 * * * *", "minute: 60 is out of range 0-59"},
	{"* * 24 * * *", "hour: 24 is out of range 0-23"},
	{"* * * 0 * *", "day-of-month: 0 is out of range 1-31"},
	{"* * * * 13 *", "month: 13 is out of range 1-12"},
	{"* * * * * 8", "day-of-week: 8 is out of range 0-7"},
	{"? * * * * *", "second: '?' is allowed only in day-of-month and day-of-week"},
	{"* * * ?/2 * *", `day-of-month: '?' takes no step in "?/2"`},
	{"*/60 * * * * *", `second: step 60 is not smaller than the 60 values of 0-59 in "*/60"`},
	{"30/30 * * * * *", `second: step 30 is not smaller than the 30 values of 30-59 in "30/30"`},
	{"*/0 * * * * *", `second: step must be at least 1 in "*/0"`},
	{"*/x * * * * *", `second: step "x" is not a number`},
	{"1/2/3 * * * * *", `second: step "2/3" is not a number`},
	{"22-2 * * * * *", `second: range "22-2" runs backwards`},
	{"1,,2 * * * * *", `second: empty item in "1,,2"`},
	{"1-2-3 * * * * *", `second: "2-3" is not a number or a name`},
	{"*-5 * * * * *", `second: "*" is not a number or a name`},
	{"+5 * * * * *", `second: "+5" is not a number or a name`},
	{"0 0 0 * * MON", `day-of-week: "MON" is not a number or a name`},
	{"0 0 0 * jan mon", ""},
	{"0 0 0 * mon *", `month: "mon" is not a number or a name`},
	{"0 0 0 L * *", `day-of-month: "L" is not a number or a name`},
	{"0 0 0 * * fri#3", `day-of-week: "fri#3" is not a number or a name`},
	{"H * * * * *", `second: "H" is not a number or a name`},
	{"0 0 0 30 feb *", "day-of-month never occurs in the selected months"},
	{"0 0 0 31 apr,jun,sep,nov *", "day-of-month never occurs in the selected months"},
	{"TZ=UTC 0 0 0 * * *", "want 6 fields (second minute hour day-of-month month day-of-week), got 7"},
	{"@every 500ms", "@every needs a duration ≥ 1s"},
	{"@every 9000h", "@every needs a duration ≤ 8784h (366 days)"},
	{"@every", `unknown descriptor "@every" (want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)`},
	{"@every 5", `@every needs a duration like 30s or 1h30m, got "5"`},
	{"@every  5s", `@every needs a duration like 30s or 1h30m, got " 5s"`},
	{"@reboot", `unknown descriptor "@reboot" (want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)`},
	{"@HOURLY", `unknown descriptor "@HOURLY" (want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)`},
}

func TestCheckSchedule(t *testing.T) {
	for _, tt := range scheduleTests {
		got := checkSchedule(tt.in)
		if got != tt.want {
			t.Errorf("checkSchedule(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got == "" {
			if err := goCronParse(tt.in); err != nil {
				t.Errorf("checkSchedule(%q) accepts what go-cron rejects: %v", tt.in, err)
			}
		}
	}
}

func TestNormalizeSchedule(t *testing.T) {
	tests := []struct{ in, want string }{
		{"  0  */5 *\t* * MON-FRI ", "0 */5 * * * mon-fri"},
		{"@every   5s", "@every 5s"},
		{"@HOURLY", "@HOURLY"},
	}
	for _, tt := range tests {
		if got := normalizeSchedule(tt.in); got != tt.want {
			t.Errorf("normalizeSchedule(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzSchedule checks that every schedule checkSchedule accepts, as given
// or after normalizing, go-cron accepts too.
func FuzzSchedule(f *testing.F) {
	for _, tt := range scheduleTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, in := range []string{s, normalizeSchedule(s)} {
			if checkSchedule(in) == "" {
				if err := goCronParse(in); err != nil {
					t.Fatalf("checkSchedule(%q) accepts what go-cron rejects: %v", in, err)
				}
			}
		}
	})
}
