package store

import (
	"os/exec"
	"testing"
)

// Only a process of this host that has certainly exited loses its claim on a grant.
func TestOwnerGone(t *testing.T) {
	t.Parallel()
	me := self()
	if me.start == 0 || me.boot == "" {
		t.Skip("no /proc: every owner counts as running")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	exited := me
	exited.pid, exited.nonce = cmd.Process.Pid, "x"
	otherStore := me
	otherStore.nonce = "y"
	otherHost := exited
	otherHost.host += "-elsewhere"
	rebooted := otherStore
	rebooted.boot = "an-earlier-boot"
	reused := me
	reused.start-- // the pid of this process, but not the process that wrote the intent
	for _, c := range []struct {
		name string
		o    owner
		gone bool
	}{
		{"exited process", exited, true},
		{"another Store of this process", otherStore, false},
		{"another host", otherHost, false},
		{"before a reboot", rebooted, true},
		{"a reused pid", reused, true},
	} {
		parsed, ok := ownerOf(c.o.String() + "#7")
		if !ok || parsed != c.o {
			t.Fatalf("%s: %q does not parse back (%+v)", c.name, c.o.String(), parsed)
		}
		if got := parsed.gone(me); got != c.gone {
			t.Errorf("%s: gone = %v, want %v", c.name, got, c.gone)
		}
	}
}
