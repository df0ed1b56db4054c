-- Queued alert deliveries go to the chain's current channels, signed with the settings' current secret
-- (alert-delivery.ts reads them at send time): the copy of the webhook secret each queued row kept is no
-- longer read. Dropping it removes those copies, and with them one more place a key rotation had to reseal.
ALTER TABLE audit_alert_deliveries DROP COLUMN secret_sealed;
