package clock

import "golang.org/x/sys/unix"

// KernelSynced reports whether the kernel considers its clock synchronised
// (adjtimex: not TIME_ERROR and STA_UNSYNC clear), as NTP or chrony leave it.
// Reading needs no privilege.
func KernelSynced() bool {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
}
