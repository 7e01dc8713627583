package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/vendors"
)

// postgresExample is the warehouse URL `init --warehouse postgres` writes for the operator to
// replace.
const postgresExample = "postgres://leadsync@localhost:5432/leadsync?sslmode=verify-full"

// initSchema puts a new PostgreSQL warehouse in a schema of its own.
const initSchema = "  schema: leadsync                # the tables' and views' schema, created when missing\n"

// plainName is a connection name that needs no quotes (the configuration allows no other).
var plainName = regexp.MustCompile(`^[a-z0-9_-]+$`)

type initOptions struct {
	vendors      []string
	dir          string
	warehouse    string // "sqlite", "postgres" or a database URL
	stateDir     string
	force        bool
	configSet    bool // --config was given on the command line
	warehouseSet bool
}

func (c *cli) initCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	o := initOptions{warehouse: "sqlite"}
	cmd := &cobra.Command{
		Use:   "init [--vendor NAME]... [--dir DIR] [--warehouse sqlite|postgres|URL] [--force]",
		Short: "write a starting configuration and empty secret files (asks on a terminal)",
		Long: `init writes a starting configuration with one connection per vendor chosen with --vendor
(without --vendor, on a terminal, it asks), and an empty file, mode 0600, for each secret it
names, in secrets/ beside it. It prints what to fill in and the commands that come next.

The configuration goes to --config FILE, or to DIR/config.yaml with --dir, else to
$LEADSYNC_CONFIG or /etc/leadsync/config.yaml, where the other commands look for it. A
configuration file that exists is replaced only with --force; a secret file that exists is
kept as it is.

Vendors (--vendor NAME):
` + initVendorList(),
		Args: noArgs,
	}
	cmd.RunE = c.do(func(_ context.Context, _ []string) (int, error) {
		o.configSet = cmd.Flags().Changed("config")
		o.warehouseSet = cmd.Flags().Changed("warehouse")
		return cmdInit(&c.flags, o, stdin, stdout, stderr)
	})
	fl := cmd.Flags()
	fl.StringSliceVar(&o.vendors, "vendor", nil, "a connection for this vendor `NAME` (repeatable, or comma-separated): "+strings.Join(initVendorNames(), ", "))
	fl.StringVar(&o.dir, "dir", "", "write `DIR`/config.yaml and DIR/secrets/ (instead of --config)")
	fl.Var(warehouseFlag{&o.warehouse}, "warehouse", "the warehouse: sqlite (in the state directory), postgres (an example URL to edit) or a database `URL`")
	fl.StringVar(&o.stateDir, "state-dir", "", "the state directory `DIR` to write (default: none, so $STATE_DIRECTORY under systemd, else ./leadsync-state)")
	fl.BoolVar(&o.force, "force", false, "replace a configuration file that exists")
	_ = cmd.RegisterFlagCompletionFunc("vendor", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, v := range initVendors() {
			out = append(out, cobra.CompletionWithDesc(v.Name, v.Title))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
	_ = cmd.RegisterFlagCompletionFunc("warehouse", cobra.FixedCompletions([]string{"sqlite", "postgres"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.MarkFlagDirname("dir")
	_ = cmd.MarkFlagDirname("state-dir")
	return cmd
}

// initVendors are the registered vendors that offer init a connection, by name.
func initVendors() []vendors.Vendor {
	return slices.DeleteFunc(vendors.All(), func(v vendors.Vendor) bool { return v.Example == nil })
}

func initVendorNames() []string {
	var names []string
	for _, v := range initVendors() {
		names = append(names, v.Name)
	}
	return names
}

func initVendorList() string {
	var b strings.Builder
	for _, v := range initVendors() {
		fmt.Fprintf(&b, "  %-14s %s\n", v.Name, v.Title)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// warehouseFlag is --warehouse: sqlite, postgres, or a database URL leadsync can open.
type warehouseFlag struct{ v *string }

func (w warehouseFlag) String() string { return *w.v }
func (w warehouseFlag) Type() string   { return "string" }
func (w warehouseFlag) Set(s string) error {
	v, err := parseWarehouse(s)
	if err != nil {
		return err
	}
	*w.v = v
	return nil
}

func parseWarehouse(s string) (string, error) {
	s = strings.TrimSpace(s)
	if k := strings.ToLower(s); k == "sqlite" || k == "postgres" {
		return k, nil
	}
	if !strings.Contains(s, "://") {
		return "", fmt.Errorf("want sqlite, postgres or a database URL (sqlite:///var/lib/leadsync/leads.db, %s), got %q", postgresExample, s)
	}
	if _, _, err := config.SplitURL(s); err != nil {
		return "", err
	}
	return s, nil
}

// initConn is one connection init writes.
type initConn struct {
	vendor  vendors.Vendor
	name    string
	answers map[string]string // values typed at the prompts, by key; the others are examples
}

// initPlan is what init writes.
type initPlan struct {
	path       string // the configuration file, absolute
	secretsDir string
	stateDir   string
	warehouse  string
	conns      []*initConn
}

func newInitConn(v vendors.Vendor) *initConn {
	return &initConn{vendor: v, name: v.Name, answers: map[string]string{}}
}

func (p *initPlan) secretPath(c *initConn, f vendors.Field) string {
	return filepath.Join(p.secretsDir, c.name+"-"+f.Secret.File)
}

// render writes the configuration. It quotes every value, and Parse checks the result.
func (p *initPlan) render() string {
	var b strings.Builder
	var names []string
	for _, c := range p.conns {
		names = append(names, c.vendor.Name)
	}
	fmt.Fprintf(&b, "# leadsync configuration, written by `leadsync init` for %s.\n", strings.Join(names, ", "))
	b.WriteString("# Every option and its default: config.example.yaml. Unknown keys are errors: check the file\n" +
		"# with `leadsync config check`. Secrets are never written here: each {file: ...} names a file,\n" +
		"# readable only by leadsync, that holds one.\n\n")
	if p.stateDir != "" {
		fmt.Fprintf(&b, "state_dir: %s\n", strconv.Quote(p.stateDir))
	} else {
		b.WriteString("# Where the SQLite databases and the token key live. Default: $STATE_DIRECTORY under systemd\n" +
			"# (/var/lib/leadsync), else ./leadsync-state in the working directory.\n# state_dir: /var/lib/leadsync\n")
	}
	switch p.warehouse {
	case "sqlite":
		fmt.Fprintf(&b, "\n# The leads database: SQLite, leads.db in state_dir. PostgreSQL instead:\n# warehouse:\n#   url: %s\n", postgresExample)
	case "postgres":
		fmt.Fprintf(&b, "\nwarehouse:\n  url: %s  # replace: your PostgreSQL database; no password in the URL (docs/operations.md)\n",
			strconv.Quote(postgresExample))
		b.WriteString(initSchema)
	default:
		fmt.Fprintf(&b, "\nwarehouse:\n  url: %s\n", strconv.Quote(p.warehouse))
		if strings.HasPrefix(p.warehouse, "postgres") && !strings.Contains(p.warehouse, "search_path=") {
			b.WriteString(initSchema)
		}
	}
	b.WriteString("\nconnections:\n")
	for i, c := range p.conns {
		if i > 0 {
			b.WriteString("\n")
		}
		name := c.name
		if !plainName.MatchString(name) {
			name = strconv.Quote(name)
		}
		fmt.Fprintf(&b, "  # %s\n  - name: %s\n    source: %s\n", c.vendor.Title, name, c.vendor.Name)
		for _, f := range c.vendor.Example {
			switch {
			case f.Secret != nil:
				fmt.Fprintf(&b, "    %s: {file: %s}  # %s\n", f.Key, strconv.Quote(p.secretPath(c, f)), f.Help)
			case f.List == nil:
				v, answered := c.answers[f.Key]
				help := f.Help
				if !answered {
					v, help = f.Value, "replace: "+help
				}
				fmt.Fprintf(&b, "    %s: %s  # %s\n", f.Key, strconv.Quote(v), help)
			}
		}
		b.WriteString("    # The defaults (uncomment one to change it):\n")
		for _, d := range config.VendorDefaults(c.vendor.Name) {
			fmt.Fprintf(&b, "    # %s: %s\n", d.Key, d.Value)
		}
	}
	return b.String()
}

// check renders and parses the plan: what init writes must load.
func (p *initPlan) check() (string, *config.Config, error) {
	for _, c := range p.conns {
		for _, f := range c.vendor.Example {
			if f.Secret != nil && (f.Secret.File == "" || f.Secret.File != filepath.Base(f.Secret.File) || strings.HasPrefix(f.Secret.File, ".")) {
				return "", nil, fmt.Errorf("vendor %s: secret file name %q is not a plain file name", c.vendor.Name, f.Secret.File)
			}
		}
	}
	text := p.render()
	cfg, err := config.Parse([]byte(text), p.path)
	return text, cfg, err
}

func cmdInit(f *flags, o initOptions, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	path := configPath(f.config)
	switch {
	case o.dir != "" && o.configSet:
		return exitUsage, usageError{"init: give --dir or --config, not both"}
	case o.dir != "":
		path = filepath.Join(o.dir, "config.yaml")
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return exitFailed, err
	}
	p := &initPlan{path: path, secretsDir: filepath.Join(filepath.Dir(path), "secrets"), warehouse: o.warehouse}
	if o.stateDir != "" {
		if p.stateDir, err = filepath.Abs(o.stateDir); err != nil {
			return exitFailed, err
		}
	}
	// Refuse before asking anything.
	if _, err := os.Lstat(path); err == nil && !o.force {
		return exitUsage, existsError(path)
	}

	if len(o.vendors) > 0 {
		picked, err := pickVendors(o.vendors, false)
		if err != nil {
			return exitUsage, err
		}
		for _, v := range picked {
			p.conns = append(p.conns, newInitConn(v))
		}
	} else {
		if in, ok := stdin.(*os.File); !ok || !term.IsTerminal(int(in.Fd())) {
			return exitUsage, usageError{"init: which vendors? Give --vendor NAME (repeatable), one of " +
				strings.Join(initVendorNames(), ", ") + " (init asks only on a terminal)"}
		}
		if err := askPlan(newPrompter(stdin, stderr), p, !o.warehouseSet); err != nil {
			return exitUsage, err
		}
	}

	text, cfg, err := p.check()
	if err != nil {
		return exitUsage, err
	}
	for _, w := range cfg.Warnings() {
		if w.Field == "warehouse.url" {
			return exitUsage, usageError{"init: --warehouse: " + w.Msg}
		}
	}
	kept, err := p.write(text, o.force)
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage, err
		}
		if errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w (run it as root, or choose another place with --dir)", err)
		}
		return exitFailed, err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintln(stderr, "leadsync init: warning:", w)
	}
	p.nextSteps(stdout, cfg, kept)
	return exitOK, nil
}

func existsError(path string) error {
	return usageError{fmt.Sprintf("init: %s exists: init does not overwrite it (--force replaces it)", path)}
}

// pickVendors finds the vendors named (or, with numbers, numbered as in initVendors).
func pickVendors(names []string, numbers bool) ([]vendors.Vendor, error) {
	offered := initVendors()
	var out []vendors.Vendor
	for _, name := range names {
		name = strings.ToLower(strings.TrimSpace(name))
		i := slices.IndexFunc(offered, func(v vendors.Vendor) bool { return v.Name == name })
		if n, err := strconv.Atoi(name); numbers && err == nil && n >= 1 && n <= len(offered) {
			i = n - 1
		}
		if i < 0 {
			return nil, usageError{fmt.Sprintf("unknown vendor %q: want one of %s", name, strings.Join(initVendorNames(), ", "))}
		}
		if slices.ContainsFunc(out, func(v vendors.Vendor) bool { return v.Name == offered[i].Name }) {
			return nil, usageError{fmt.Sprintf("vendor %q chosen twice: init writes one connection per vendor "+
				"(copy it in the file for another account)", offered[i].Name)}
		}
		out = append(out, offered[i])
	}
	return out, nil
}

// write creates the secret files that do not exist yet, empty, then the configuration. It
// returns the secret files that existed, which it leaves as they are.
func (p *initPlan) write(text string, force bool) (kept map[string]bool, err error) {
	if fi, err := os.Lstat(p.path); err == nil {
		switch {
		case !fi.Mode().IsRegular():
			return nil, usageError{fmt.Sprintf("init: %s exists and is not a file", p.path)}
		case !force:
			return nil, existsError(p.path)
		}
	}
	kept = map[string]bool{}
	var stubs []string
	for _, c := range p.conns {
		for _, f := range c.vendor.Example {
			if f.Secret == nil {
				continue
			}
			path := p.secretPath(c, f)
			switch fi, err := os.Lstat(path); {
			case err == nil && fi.IsDir():
				return nil, usageError{fmt.Sprintf("init: %s is a directory, not a secret file", path)}
			case err == nil:
				kept[path] = true
			default:
				stubs = append(stubs, path)
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(p.secretsDir, 0o700); err != nil {
		return nil, err
	}
	for _, path := range stubs {
		if err := writeNew(path, nil, 0o600); err != nil {
			return nil, err
		}
	}
	if force {
		return kept, replaceFile(p.path, []byte(text), 0o640)
	}
	return kept, writeNew(p.path, []byte(text), 0o640)
}

// writeNew writes a file that must not exist, with exactly mode perm.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return usageError{fmt.Sprintf("init: %s exists: init does not overwrite it", path)}
	}
	if err != nil {
		return err
	}
	err = f.Chmod(perm) // whatever the umask
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// replaceFile writes path through a temporary file, so that it is never half written.
func replaceFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// nextSteps tells the operator what is left to do.
func (p *initPlan) nextSteps(w io.Writer, cfg *config.Config, kept map[string]bool) {
	cfgFlag := " --config " + shellQuote(p.path)
	fmt.Fprintf(w, "Wrote %s (mode 0640).\n\nSecret files (mode 0600), one value each:\n", p.path)
	placeholders := false
	for _, c := range p.conns {
		for _, f := range c.vendor.Example {
			switch {
			case f.Secret != nil:
				path := p.secretPath(c, f)
				state := "empty: fill it in"
				if kept[path] {
					state = "kept: it existed"
				}
				fmt.Fprintf(w, "  %s  (%s)\n      %s\n", path, state, f.Help)
			case f.List == nil:
				if _, answered := c.answers[f.Key]; !answered {
					placeholders = true
				}
			}
		}
	}
	if p.warehouse == "postgres" {
		placeholders = true
	}
	fmt.Fprintln(w, "\nNext:")
	n := 0
	step := func(format string, args ...any) {
		n++
		fmt.Fprintf(w, "  %d. %s\n", n, fmt.Sprintf(format, args...))
	}
	if placeholders {
		step("replace the example values marked \"# replace:\" in %s", p.path)
	}
	step("write each secret into its file (its mode stays 0600), with an editor or, in bash, without echo or\n" +
		"     history: read -rs S; printf '%%s' \"$S\" > FILE; unset S")
	step("leadsync config check%s", cfgFlag)
	var logins []string
	for _, conn := range cfg.Connections {
		switch _, _, pw := conn.PasswordGrant(); {
		case conn.StaticAuth():
		case pw:
			logins = append(logins, "leadsync auth password "+conn.Name+cfgFlag)
		default:
			logins = append(logins, "leadsync auth login "+conn.Name+cfgFlag)
		}
	}
	if len(logins) > 0 {
		step("%s", strings.Join(logins, "\n     "))
	}
	step("leadsync run --once%s", cfgFlag)
	fmt.Fprintln(w, "\nUnder the systemd unit, whose dynamic user cannot read these files, keep the secrets as\n"+
		"systemd credentials instead ({credential: NAME}): docs/operations.md, \"Secrets\".")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_./-:@%+=,", r)))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// prompter asks init's questions on a terminal (or any reader: tests).
type prompter struct {
	in  *bufio.Reader
	out io.Writer
}

func newPrompter(in io.Reader, out io.Writer) *prompter {
	return &prompter{in: bufio.NewReader(in), out: out}
}

// ask asks one question; an empty answer is "" (the caller's default, shown in brackets).
func (p *prompter) ask(question, def string) (string, error) {
	if def != "" {
		fmt.Fprintf(p.out, "%s [%s]: ", question, def)
	} else {
		fmt.Fprintf(p.out, "%s: ", question)
	}
	line, err := p.in.ReadString('\n')
	if err != nil && (!errors.Is(err, io.EOF) || line == "") {
		fmt.Fprintln(p.out)
		if errors.Is(err, io.EOF) {
			return "", usageError{"init: no answer (end of input): nothing written"}
		}
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// askPlan asks for the vendors, the warehouse (when ask is set) and each connection's values.
func askPlan(p *prompter, plan *initPlan, askWarehouse bool) error {
	fmt.Fprintf(p.out, "leadsync init writes %s and its secret files in %s.\n\nVendors:\n", plan.path, plan.secretsDir)
	offered := initVendors()
	for i, v := range offered {
		fmt.Fprintf(p.out, "  %d. %-14s %s\n", i+1, v.Name, v.Title)
	}
	for len(plan.conns) == 0 {
		ans, err := p.ask("Which vendors? (names or numbers, separated by spaces or commas)", "")
		if err != nil {
			return err
		}
		picked, err := pickVendors(strings.FieldsFunc(ans, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }), true)
		if err != nil {
			fmt.Fprintf(p.out, "  %v\n", err)
		}
		for _, v := range picked {
			plan.conns = append(plan.conns, newInitConn(v))
		}
	}
	for askWarehouse {
		ans, err := p.ask("Warehouse: sqlite, postgres or a database URL", "sqlite")
		if err != nil {
			return err
		}
		v, err := parseWarehouse(cmp.Or(ans, "sqlite"))
		if err != nil {
			fmt.Fprintf(p.out, "  %v\n", err)
			continue
		}
		plan.warehouse, askWarehouse = v, false
	}
	for i := range plan.conns {
		if err := askConn(p, plan, i); err != nil {
			return err
		}
	}
	return nil
}

// askConn asks for the name and values of the i'th connection until they check, with the
// connections before it (whose names it must not take).
func askConn(p *prompter, plan *initPlan, i int) error {
	c := plan.conns[i]
	fmt.Fprintf(p.out, "\n%s:\n", c.vendor.Title)
	for {
		ans, err := p.ask("  connection name", c.name)
		if err != nil {
			return err
		}
		c.name = cmp.Or(ans, c.name)
		for _, f := range c.vendor.Example {
			if f.Secret != nil || f.List != nil {
				continue
			}
			def := f.Value
			if a, ok := c.answers[f.Key]; ok {
				def = a
			}
			ans, err := p.ask(fmt.Sprintf("  %s, %s", f.Key, f.Help), def)
			if err != nil {
				return err
			}
			if ans != "" {
				c.answers[f.Key] = ans
			}
		}
		upTo := *plan
		upTo.conns = plan.conns[:i+1]
		_, _, err = upTo.check()
		if err == nil {
			return nil
		}
		for _, e := range configErrors(err) {
			fmt.Fprintf(p.out, "  %s\n", e)
		}
	}
}

// configErrors are the problems of a configuration init rendered, each with its key
// relative to the connection (the operator has not seen the file's lines).
func configErrors(err error) []string {
	var es config.Errors
	var e *config.Error
	switch {
	case errors.As(err, &es):
	case errors.As(err, &e):
		es = config.Errors{e}
	default:
		return []string{err.Error()}
	}
	var out []string
	for _, e := range es {
		field := e.Field
		if _, rest, ok := strings.Cut(field, "]."); ok && strings.HasPrefix(field, "connections[") {
			field = rest
		}
		out = append(out, field+": "+e.Msg)
	}
	return out
}
