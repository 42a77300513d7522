package snapshots

import (
	osexec "os/exec"
	"strconv"
)

func exec(name string, args ...string) *osexec.Cmd { return osexec.Command(name, args...) }

func itoa(n int) string { return strconv.Itoa(n) }
