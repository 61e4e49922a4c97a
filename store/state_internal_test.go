package store

import "testing"

// TestDecodeStateFormats: state stored before writers were recorded (a
// plain object of values) reads as its values with no writers; the current
// format reads whole.
func TestDecodeStateFormats(t *testing.T) {
	old, err := decodeState([]byte(`{"n": 3, "format": "mine"}`))
	if err != nil || len(old.Values) != 2 || string(old.Values["n"]) != "3" || len(old.Writers) != 0 {
		t.Fatalf("old format = %+v, %v", old, err)
	}
	cur, err := decodeState([]byte(`{"format":"` + stateFormat + `","values":{"n":4},"writers":["a","b"]}`))
	if err != nil || string(cur.Values["n"]) != "4" || len(cur.Writers) != 2 {
		t.Fatalf("current format = %+v, %v", cur, err)
	}
	if _, err := decodeState([]byte(`[1]`)); err == nil {
		t.Fatal("a JSON array decoded as state")
	}
}
