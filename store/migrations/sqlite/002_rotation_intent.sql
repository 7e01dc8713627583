-- +goose Up
-- A refresher records its intent on the row, durably, before it calls the vendor, and clears
-- it with the rotated pair: no other process spends the refresh token meanwhile. rotating_by
-- names the process (see store/owner.go); '' means no refresh in progress.
ALTER TABLE grants ADD COLUMN rotating_by TEXT NOT NULL DEFAULT '';
ALTER TABLE grants ADD COLUMN rotating_since_ms INTEGER;
