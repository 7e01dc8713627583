-- +goose Up
-- See sqlite/002_rotation_intent.sql.
ALTER TABLE grants ADD COLUMN rotating_by TEXT NOT NULL DEFAULT '';
ALTER TABLE grants ADD COLUMN rotating_since_ms BIGINT;
