-- Syslog sinks (RFC 5424 over TLS, RFC 5425 framing) next to webhooks, through the same outbox.
-- They carry no signing secret; a sink may name the private CA that signs its receiver's certificate.
ALTER TABLE audit_sinks DROP CONSTRAINT audit_sinks_kind_check;
ALTER TABLE audit_sinks ADD CONSTRAINT audit_sinks_kind_check CHECK (kind IN ('webhook', 'syslog'));
ALTER TABLE audit_sinks ALTER COLUMN secret_sealed DROP NOT NULL;
ALTER TABLE audit_sinks ADD CONSTRAINT audit_sinks_webhook_secret CHECK (kind <> 'webhook' OR secret_sealed IS NOT NULL);
ALTER TABLE audit_sinks ADD COLUMN tls_ca text;
