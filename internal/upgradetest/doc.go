// Package upgradetest proves that an upgrade loses nothing. Its test builds leadsync as of a
// fixed earlier commit from the repository's own git history (the "old binary"), and with
// it authorizes every sandbox connection and runs a backfill into a fresh warehouse and
// token store. Then the code of this checkout (the "new code", through internal/app, as
// the CLI builds it) opens the same configuration, warehouse and token store, and must:
//   - migrate both in place and run incrementally from the old cursors: its first run
//     costs about what a steady incremental run costs, far less than the backfill;
//   - leave the warehouse equal to the vendors' ground truth, with the changes made at the
//     vendors after the backfill, and every lead stored before the upgrade kept as it was;
//   - refresh every stored grant at its vendor, and use the new token.
//
// It runs on SQLite and on PostgreSQL. The old commit is pinned (baseCommit): move it
// forward only to a release that users run, and keep the old one in a test of its own if
// its upgrade path still matters.
//
// The package has no code besides its test.
package upgradetest
