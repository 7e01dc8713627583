package main

import (
	"context"
	"log/slog"

	"github.com/leadsync/leadsync/internal/app"
	"github.com/leadsync/leadsync/internal/ops"
	"github.com/leadsync/leadsync/sink"
)

// statusPage gives the daemon's page at / what `leadsync status` shows, plus the leads
// written per day over the last 30 days.
func statusPage(a *app.App, version string) ops.StatusProvider {
	return func(ctx context.Context) (ops.StatusView, error) {
		doc, _, _, now, err := loadStatus(ctx, a)
		if err != nil {
			a.Logger.Warn("status page", slog.String("error", err.Error()))
			return ops.StatusView{}, err
		}
		v := ops.StatusView{GeneratedAt: now, Version: version, Summary: summaryLine(doc.Summary, now)}
		for _, c := range doc.Connections {
			cv := ops.ConnectionView{Name: c.Connection, Source: c.Source, Grant: c.Grant, Fix: c.Fix,
				LastOKAt: c.LastOKAt, NextRunAt: c.NextRunAt, NextRunFull: c.NextRunFull}
			if r := c.LastRun; r != nil {
				cv.LastRunAt, cv.LastResult, cv.LastFull, cv.LastError = r.FinishedAt, r.Status, r.Mode == sink.ModeFull, r.Error
			}
			v.Connections = append(v.Connections, cv)
		}
		for _, at := range doc.Attention {
			v.Attention = append(v.Attention, ops.AccountView{Source: at.Source, Account: at.AccountID, Name: at.Name,
				Problem: at.Problem, LastSuccess: at.LastSyncedAt, Detail: at.Detail})
		}
		if dw, ok := a.Sink.(sink.DailyWriter); ok {
			days, err := dw.LeadsWrittenPerDay(ctx, 30, now)
			if err != nil {
				a.Logger.Warn("status page: leads written per day", slog.String("error", err.Error()))
				return ops.StatusView{}, err
			}
			for _, d := range days {
				v.Daily = append(v.Daily, ops.DayCount{Day: d.Day, Leads: d.Leads})
			}
		}
		return v, nil
	}
}
