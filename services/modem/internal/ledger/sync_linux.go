package ledger

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync flushes the file's data without the metadata a write into
// preallocated space leaves unchanged.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
