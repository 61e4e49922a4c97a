package disk

import "testing"

func TestSize(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1 KiB"}, {1536, "1.5 KiB"}, {16 << 20, "16 MiB"}, {3 << 29, "1.5 GiB"}, {1 << 40, "1 TiB"}, {100000, "97.7 KiB"}} {
		if got := Size(c.n); got != c.want {
			t.Errorf("Size(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

func TestUsage(t *testing.T) {
	free, total, err := Usage(t.TempDir())
	if err != nil || total <= 0 || free < 0 || free > total {
		t.Fatalf("Usage = %d free of %d, %v", free, total, err)
	}
	if _, _, err := Usage("/no/such/dir"); err == nil {
		t.Fatal("Usage of a missing dir: no error")
	}
}
