package ops

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The systemd notifications. Each is a no-op returning nil when NOTIFY_SOCKET is unset
// (not started by systemd, or not Type=notify).

// Ready tells systemd that startup is complete (Type=notify): call it once the config is
// loaded, the databases are open and the scheduler runs.
func Ready() error { return notify(daemon.SdNotifyReady) }

// Status sets the one-line status shown by `systemctl status leadsync`.
func Status(msg string) error {
	// A newline would start another assignment (e.g. a forged READY=1).
	return notify("STATUS=" + strings.Join(strings.Fields(msg), " "))
}

// Stopping tells systemd the service is shutting down (the soft stop began).
func Stopping() error { return notify(daemon.SdNotifyStopping) }

// Reloading tells systemd the service began reloading its configuration (SIGHUP). Ready
// must follow once the reload is over, applied or refused. MONOTONIC_USEC lets systemd match
// the notification to the reload it asked for (sd_notify(3)).
func Reloading() error {
	return notify(daemon.SdNotifyReloading + "\n" + strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
}

// ExtendTimeout asks systemd for d more time in the phase the service is in: before READY=1
// it pushes back TimeoutStartSec=, for work of unknown length such as migrations. Each call
// sets the deadline to d from now, so it must be repeated before d runs out (Extending).
func ExtendTimeout(d time.Duration) error {
	return notify(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds()))
}

// Extending keeps systemd's timeout d ahead of now until stop is called: ExtendTimeout(d) at
// once, then every d/3, so that a late datagram or a slow tick still lands in time. Without
// NOTIFY_SOCKET it sends nothing.
func Extending(d time.Duration) (stop func()) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return func() {}
	}
	t := time.NewTicker(d / 3)
	return extending(t.C, t.Stop, func() error { return ExtendTimeout(d) })
}

// extending is the loop of Extending, with the ticks and the notification injected for tests.
func extending(ticks <-chan time.Time, stopTicks func(), extend func() error) (stop func()) {
	_ = extend()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-ticks:
				_ = extend()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			stopTicks()
			close(done)
			<-finished // no extension goes out after stop returns
		})
	}
}

func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("ops: sd_notify %s: %w", strings.SplitN(state, "=", 2)[0], err)
	}
	return nil
}

// Watchdog pings systemd's watchdog (WatchdogSec=) at half its interval for as long as
// alive() reports true, until ctx ends. When alive() is false a ping is skipped, so a wedged
// scheduler lets the watchdog expire and systemd restarts the service. It returns nil at
// once when the watchdog is not enabled for this process.
func Watchdog(ctx context.Context, alive func() bool) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("ops: watchdog: %w", err)
	}
	if interval <= 0 {
		return nil
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	return watchdog(ctx, t.C, alive, func() error { return notify(daemon.SdNotifyWatchdog) })
}

// watchdog is the loop of Watchdog, with the ticks and the ping injected for tests. A ping
// is also sent at once, so a slow first tick cannot expire the watchdog. A failed ping is
// not fatal: the next tick tries again, and systemd restarts us if none gets through.
func watchdog(ctx context.Context, ticks <-chan time.Time, alive func() bool, ping func() error) error {
	for {
		if alive() {
			_ = ping()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
		}
	}
}

// StopMargin is how long the daemon may still take once its soft stop (shutdown_timeout)
// is over: aborting the requests in flight, closing the run ledger (10 s at most), stopping
// the HTTP server, waiting for a token refresh in flight (the token store bounds one vendor
// call to 30 s; abandoning it could lose a rotated refresh token) and for the write of a
// rotated token (TokenWriteWait; the recovery file holds it already). These rarely add up:
// the unit's TimeoutStopSec= must be at least shutdown_timeout + StopMargin.
const StopMargin = 30 * time.Second

// TokenWriteWait is how long a stopping process waits for the token store to take a rotated
// token pair it refused so far, before sealing the pair into the recovery file.
const TokenWriteWait = 10 * time.Second
