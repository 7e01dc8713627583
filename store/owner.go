package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// owner names the Store that wrote a rotation intent. Host, boot, pid and the process's
// start time let another process of the same host tell whether it still runs; the random
// part tells apart Stores of one process.
type owner struct {
	host, boot string
	pid        int
	start      uint64 // clock ticks after boot; 0 when unknown (no /proc)
	nonce      string
}

func self() owner {
	host, _ := os.Hostname()
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	o := owner{host: host, boot: strings.TrimSpace(string(boot)), pid: os.Getpid(), nonce: hex.EncodeToString(b)}
	o.start, _ = procStart(o.pid)
	return o
}

// String is what rotating_by holds (before the intent's "#seq"). Host names hold no '/'.
func (o owner) String() string {
	return fmt.Sprintf("%s/%s/%d/%d/%s", o.host, o.boot, o.pid, o.start, o.nonce)
}

// ownerOf parses the owner part of an intent.
func ownerOf(intent string) (owner, bool) {
	s, _, _ := strings.Cut(intent, "#")
	f := strings.Split(s, "/")
	if len(f) != 5 {
		return owner{}, false
	}
	pid, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseUint(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return owner{}, false
	}
	return owner{host: f[0], boot: f[1], pid: pid, start: start, nonce: f[4]}, true
}

// gone reports whether o certainly no longer runs, as seen from me: a process of this host
// that has exited, or one from a previous boot. A process of another host, or anything
// this host cannot tell, counts as running: the safe answer.
func (o owner) gone(me owner) bool {
	if o.host != me.host || me.boot == "" || me.start == 0 {
		return false
	}
	if o.boot != me.boot {
		return o.boot != ""
	}
	if o.pid == me.pid && o.start == me.start {
		return false // this very process
	}
	start, err := procStart(o.pid)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	return err == nil && o.start != 0 && start != o.start // the pid was reused
}

// procStart reads a process's start time from /proc/<pid>/stat (field 22).
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: count from its end.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("malformed /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}
