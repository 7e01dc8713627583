package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// version, when set at build time (-ldflags "-X main.version=v1.2.3"), is the version a
// release build reports; otherwise it comes from the build info the go command records.
var version string

// revision and modified (-X main.revision=<commit> -X main.modified=true) stand in for the
// build info's vcs.revision and vcs.modified, which the go command does not record in a linked
// git worktree or with -buildvcs=false. scripts/dist.sh sets them.
var revision, modified string

// buildInfo is what a binary knows of its build.
type buildInfo struct {
	Version  string // -ldflags version, else the module version; "devel" when neither says
	Revision string // vcs.revision
	Time     string // vcs.time
	Modified bool   // vcs.modified: built from a tree with uncommitted changes
	Go       string
}

// buildVersion is this binary's build.
func buildVersion() buildInfo {
	info, _ := debug.ReadBuildInfo()
	b := versionFrom(version, info)
	if b.Revision == "" && revision != "" {
		b.Revision, b.Modified = revision, modified == "true"
	}
	return b
}

func versionFrom(ldflags string, info *debug.BuildInfo) buildInfo {
	b := buildInfo{Version: ldflags}
	if info == nil {
		return b.orDevel()
	}
	b.Go = info.GoVersion
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	// "(devel)": go build without a version control tag or revision (go run, -buildvcs=false).
	if b.Version == "" && info.Main.Version != "(devel)" {
		b.Version = info.Main.Version
	}
	return b.orDevel()
}

func (b buildInfo) orDevel() buildInfo {
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// String is the one-word version for `--version`, the start-up log line and
// leadsync_build_info: the version, and for a build without one the revision, and whether
// the tree had uncommitted changes. The go command's pseudo-versions already carry both.
func (b buildInfo) String() string {
	v := b.Version
	if v == "devel" && b.Revision != "" {
		v += "+" + shortRev(b.Revision)
	}
	if b.Modified && !strings.Contains(v, "dirty") {
		if strings.Contains(v, "+") {
			v += ".dirty"
		} else {
			v += "+dirty"
		}
	}
	return v
}

// Details is what `leadsync version` prints.
func (b buildInfo) Details() string {
	var s strings.Builder
	fmt.Fprintf(&s, "leadsync %s\n", b)
	if b.Revision != "" {
		fmt.Fprintf(&s, "  revision  %s\n", b.Revision)
	}
	if b.Time != "" {
		fmt.Fprintf(&s, "  time      %s\n", b.Time)
	}
	if b.Revision != "" {
		fmt.Fprintf(&s, "  modified  %t\n", b.Modified)
	}
	if b.Go != "" {
		fmt.Fprintf(&s, "  go        %s\n", b.Go)
	}
	return s.String()
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}
