package main

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/config"
	"github.com/leadsync/leadsync/internal/ops"
)

// reloadPlan is a configuration a SIGHUP read, checked and wired, ready for the daemon to
// put in use once its runs in flight are over.
type reloadPlan struct {
	wiring         *app.Wiring
	added, removed []string // enabled connections new to it, and gone from it
	runOnStart     []string // the added ones with run_on_start
	restartOnly    []string // settings it changes that apply at the next restart only
}

// reload handles a SIGHUP: the configuration is read again and checked as at start, its
// connections wired, and nothing running is touched. A configuration with an error is
// refused (logged, naming the field) and the daemon goes on with the one it has: nil.
func reload(log *slog.Logger, f *flags, a *app.App) *reloadPlan {
	_ = ops.Reloading()
	log.Info("reloading the configuration", slog.String("file", a.Config.File()))
	plan, err := prepareReload(f, a)
	if err != nil {
		attrs := []any{slog.String("file", a.Config.File()), slog.String("error", err.Error())}
		if fields := configFields(err); len(fields) > 0 {
			attrs = append(attrs, slog.String("field", strings.Join(fields, ", ")))
		}
		log.Error("reload refused: the configuration has an error; still running on the previous one", attrs...)
		_ = ops.Status("reload refused, still on the previous configuration: " + err.Error())
		_ = ops.Ready()
		return nil
	}
	if len(plan.restartOnly) > 0 {
		log.Warn("reload: these settings keep their running values until the next restart (systemctl restart leadsync)",
			slog.Any("fields", plan.restartOnly))
	}
	return plan
}

func prepareReload(f *flags, a *app.App) (*reloadPlan, error) {
	cfg, err := f.loadWithKey()
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(cfg.Connections, func(c config.Connection) bool { return c.IsEnabled() }) {
		return nil, &config.Error{File: cfg.File(), Field: "connections",
			Msg: "no enabled connections: nothing to sync (add one under connections:, see config.example.yaml)"}
	}
	plan := &reloadPlan{restartOnly: keepRestartOnly(a.Config, cfg)}
	if plan.wiring, err = a.Rewire(cfg); err != nil {
		return nil, err
	}
	before, after := enabledNames(a.Config), enabledNames(cfg)
	for _, c := range cfg.Connections {
		if c.IsEnabled() && !slices.Contains(before, c.Name) {
			plan.added = append(plan.added, c.Name)
			if c.RunsOnStart() {
				plan.runOnStart = append(plan.runOnStart, c.Name)
			}
		}
	}
	for _, name := range before {
		if !slices.Contains(after, name) {
			plan.removed = append(plan.removed, name)
		}
	}
	return plan, nil
}

// keepRestartOnly gives next the running values of the settings a reload cannot change:
// the databases and the token key (open), the listeners (serving: metrics and webhooks), the logger, the worker's
// identity and the soft-stop timeout (armed). It returns those next wanted changed.
func keepRestartOnly(running, next *config.Config) []string {
	var changed []string
	keep := func(field string, same bool, restore func()) {
		if !same {
			changed = append(changed, field)
			restore()
		}
	}
	keep("state_dir", running.StateDir == next.StateDir, func() { next.StateDir = running.StateDir })
	keep("warehouse", running.Warehouse == next.Warehouse, func() { next.Warehouse = running.Warehouse })
	keep("token_store", running.TokenStore == next.TokenStore, func() { next.TokenStore = running.TokenStore })
	keep("shutdown_timeout", running.ShutdownTimeout == next.ShutdownTimeout, func() { next.ShutdownTimeout = running.ShutdownTimeout })
	keep("http", running.HTTP == next.HTTP, func() { next.HTTP = running.HTTP })
	keep("log", running.Log == next.Log, func() { next.Log = running.Log })
	keep("worker", running.Worker == next.Worker, func() { next.Worker = running.Worker })
	keep("webhooks", reflect.DeepEqual(running.Webhooks, next.Webhooks), func() { next.Webhooks = running.Webhooks })
	return changed
}

// runOnStart lists cfg's enabled connections with run_on_start.
func runOnStart(cfg *config.Config) []string {
	var out []string
	for _, c := range cfg.Connections {
		if c.IsEnabled() && c.RunsOnStart() {
			out = append(out, c.Name)
		}
	}
	return out
}

func enabledNames(cfg *config.Config) []string {
	var out []string
	for _, c := range cfg.Connections {
		if c.IsEnabled() {
			out = append(out, c.Name)
		}
	}
	return out
}

// configFields are the key paths a configuration error names.
func configFields(err error) []string {
	var out []string
	var es config.Errors
	var e *config.Error
	switch {
	case errors.As(err, &es):
		for _, e := range es {
			if e.Field != "" && !slices.Contains(out, e.Field) {
				out = append(out, e.Field)
			}
		}
	case errors.As(err, &e) && e.Field != "":
		out = append(out, e.Field)
	}
	return out
}

// reloadedStatus is the STATUS= line after a reload.
func reloadedStatus(p *reloadPlan, conns int) string {
	msg := fmt.Sprintf("reloaded the configuration: %d connections", conns)
	if len(p.added) > 0 {
		msg += ", added " + strings.Join(p.added, ", ")
	}
	if len(p.removed) > 0 {
		msg += ", removed " + strings.Join(p.removed, ", ")
	}
	return msg
}

// reloadedAttrs are the fields of the "reloaded the configuration" line.
func reloadedAttrs(p *reloadPlan, a *app.App) []any {
	attrs := []any{slog.String("file", a.Config.File()), slog.Int("connections", len(a.Conns))}
	if len(p.added) > 0 {
		attrs = append(attrs, slog.Any("added", p.added))
	}
	if len(p.removed) > 0 {
		attrs = append(attrs, slog.Any("removed", p.removed))
	}
	return attrs
}
