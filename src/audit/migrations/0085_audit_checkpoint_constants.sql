-- Chain constants in the signed checkpoints (tamper-evidence review of 2026-11-28, items 1 and 3 of
-- docs/audit.md "What the database owner can still do"). audit_chain_heads.mac_from_seq (0059) and
-- legacy_events (0030) are fixed for the app role (0034's column grants, 0084's trigger), but the table
-- owner can disable the trigger: raised above the head, mac_from_seq let MAC-less forged events pass
-- verify and the checkpoint job signed over them; raised legacy_events let a row without a chain position
-- pass. Every checkpoint signed from now on carries both values inside its signed canonical JSON
-- (src/audit/canonical.ts); these columns store them beside the signature. NULL (both) on checkpoints
-- signed before: their canonical form, and so their signature, stays as it was.
--
-- The columns are not trusted on their own: a row is a checkpoint only when its signature verifies over
-- them (src/audit/walk.ts), so a value written here by anyone without SECRET_KEY makes the row forged.
-- The app role inserts them with the rest of the row (its table-wide INSERT grant of 0030); the table
-- stays append-only (0030's trigger).
ALTER TABLE audit_checkpoints
  ADD COLUMN mac_from_seq bigint CHECK (mac_from_seq >= 1),
  ADD COLUMN legacy_events bigint CHECK (legacy_events >= 0),
  ADD CONSTRAINT audit_checkpoints_constants_together
    CHECK ((mac_from_seq IS NULL) = (legacy_events IS NULL));
